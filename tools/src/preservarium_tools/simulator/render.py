"""Contact reports as lines for humans: what was sent, answered, sent down and parsed."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Any

from preservarium_tools.simulator.outcomes import Outcome
from preservarium_tools.simulator.run import ContactReport

UNITS = {
    "temperature": "°C",
    "humidity": "%",
    "humidity_accurate": "%",
    "atmospheric_pressure": "hPa",
    "differential_pressure": "Pa",
}
Data = dict[str, Any]


def contact_line(report: ContactReport) -> str:
    """`282c02000001 m CON 2.01 → parsed: temperature 21.4 °C, humidity 45 %`."""
    contact = report.contact
    kind = "CON" if contact.confirmable else "NON"
    head = f"{contact.device_id} {contact.path} {kind}"
    if report.answer is None:
        return f"{head} no answer"
    head = f"{head} {report.answer.dotted_code}"
    if contact.path == "t":
        head += time_reply(report.answer.payload)
    return f"{head} → {outcome_text(report)}" if _followed(report) else head


def downlink_line(report: ContactReport) -> str | None:
    """`↳ downlink 103c…: measurement_period_base=60, …`, when the answer carried one."""
    if report.answer is None or not report.answer.payload or report.contact.path == "t":
        return None
    hex_text = report.answer.payload.hex()
    if report.downlink_error is not None:
        return f"  ↳ downlink {hex_text}: not a configuration ({report.downlink_error})"
    fields = ", ".join(str(item) for item in report.downlink)
    return f"  ↳ downlink {hex_text}: {fields}"


def time_reply(payload: bytes) -> str:
    """The server time a `t` answer carries, and how far it is from this host's clock."""
    if len(payload) != 4:
        return f" (reply {payload.hex() or 'empty'})"
    server = int.from_bytes(payload, "big")
    skew = server - int(datetime.now(UTC).timestamp())
    moment = datetime.fromtimestamp(server, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f" time {moment} (clock {skew:+d} s)"


def outcome_text(report: ContactReport) -> str:
    """What the parsed or failed topic said about the contact."""
    if report.outcome is None:
        return report.outcome_note or "not followed"
    return describe_outcome(report.outcome)


def describe_outcome(outcome: Outcome) -> str:
    """`parsed: temperature 21.4 °C, ...` or `failed: runtime_error: ...`."""
    record = outcome.record
    if outcome.topic == "failed":
        error = record.get("error")
        error = error if isinstance(error, dict) else {}
        return _printable(f"failed: {error.get('kind')}: {error.get('message')}")
    data = record.get("data")
    summary = summarize(data) if isinstance(data, dict) else "?"
    return _printable(f"parsed: {summary}{_parser(record)}")


def summarize(data: Data) -> str:
    """The essentials of an Efento parser's output."""
    message = data.get("message")
    if message == "measurements":
        return _measurements(data)
    if message == "device_info":
        return _device_info(data)
    if message == "configuration":
        return _configuration(data)
    if message == "time_request":
        return "time request"
    return str(message or "data")


def _measurements(data: Data) -> str:
    newest: dict[tuple[Any, Any], Data] = {}
    counts: dict[tuple[Any, Any], int] = {}
    for sample in data.get("measurements") or ():
        key = (sample.get("channel"), sample.get("type"))
        counts[key] = counts.get(key, 0) + 1
        if key not in newest or sample.get("timestamp", 0) >= newest[key].get("timestamp", 0):
            newest[key] = sample
    if not newest:
        return "no samples"
    parts = [_sample(sample) for sample in newest.values()]
    samples = max(counts.values())
    extra = f" (newest of {samples} samples)" if samples > 1 else ""
    return ", ".join(parts) + extra


def _sample(sample: Data) -> str:
    kind = str(sample.get("type"))
    if "error_code" in sample:
        return f"{kind} error {sample['error_code']}"
    unit = UNITS.get(kind, "")
    return f"{kind} {sample.get('value')}{' ' + unit if unit else ''}"


def _device_info(data: Data) -> str:
    parts = ["device info"]
    if "software_version" in data:
        parts.append(f"firmware {data['software_version']}")
    if "battery_voltage" in data:
        parts.append(f"battery {data['battery_voltage']} V")
    if "up_time" in data:
        parts.append(f"up {data['up_time']} s")
    return ", ".join(parts)


def _configuration(data: Data) -> str:
    base, factor = data.get("measurement_period_base"), data.get("measurement_period_factor")
    parts = [f"configuration: period {base} s x {factor or 1}"]
    if "transmission_interval" in data:
        parts.append(f"transmission every {data['transmission_interval']} s")
    parts.append(f"hash {data.get('configuration_hash')}")
    errors = data.get("configuration_errors")
    if errors:
        parts.append(f"errors {errors}")
    return ", ".join(parts)


def _parser(record: Data) -> str:
    parser = record.get("parser")
    if not isinstance(parser, dict):
        return ""
    return f"  [{parser.get('name')} v{parser.get('version')}]"


def _followed(report: ContactReport) -> bool:
    return report.outcome is not None or report.outcome_note is not None


def _printable(text: str) -> str:
    # Records carry device-controlled text: never let it move the cursor or break a line.
    return "".join(ch if unicodedata.category(ch) != "Cc" else f"\\x{ord(ch):02x}" for ch in text)
