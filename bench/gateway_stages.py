"""The stages of a contact in a cProfile of the gateway, as a per-contact CPU budget.

Every function's self time goes to one stage: by its module or name when it belongs to
one (RULES, first match wins), else to the stages of its callers, in proportion to the
calls each made (a builtin such as `sendmsg`, a json encoder, an asyncio future: whoever
asked for it pays). The stages together are the main thread's whole CPU.
"""

from __future__ import annotations

import pstats
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Key = tuple[str, int, str]
# (stage, path fragment or "" for any, function name or "" for any)
RULES: list[tuple[str, str, str]] = [
    ("raw record", "", "_publish_raw"),
    ("raw record", "", "raw_record"),
    ("parsed record", "", "parsed_record"),
    ("parsed record", "", "_publish_result"),
    ("failed record", "", "failed_record"),
    ("failed record", "", "_publish_failure"),
    ("uuid & time", "uuid.py", ""),
    ("uuid & time", "", "rfc3339"),
    ("uuid & time", "", "new_record_id"),
    ("metrics", "/prometheus_client/", ""),
    ("metrics", "preservarium/metrics.py", ""),
    ("metrics", "", "_count"),
    ("metrics", "", "published"),
    ("logging", "/logging/", ""),
    ("logging", "log_throttle.py", ""),
    ("logging", "preservarium/logs.py", ""),
    ("kafka send", "/aiokafka/", ""),
    ("kafka send", "preservarium_gateway/kafka.py", ""),
    ("sandbox call (client)", "/grpc/", ""),
    ("sandbox call (client)", "parse_stream.py", ""),
    ("sandbox call (client)", "sandbox_client.py", ""),
    ("sandbox call (client)", "sandbox_answers.py", ""),
    ("sandbox call (client)", "/google/protobuf/", ""),
    ("sandbox call (client)", "", "_parse"),
    ("command check", "preservarium_gateway/commands.py", ""),
    ("command check", "preservarium_gateway/pending_commands.py", ""),
    ("command check", "", "_claim"),
    ("command check", "", "_deliver_command"),
    ("command check", "preservarium_gateway/contact.py", "_command"),
    ("datagram guard & dedup", "preservarium_gateway/datagrams.py", ""),
    ("datagram guard & dedup", "preservarium_gateway/dedup.py", ""),
    ("datagram guard & dedup", "preservarium_gateway/fair_entries.py", ""),
    ("datagram guard & dedup", "preservarium_gateway/coap_tuning.py", ""),
    ("reply", "preservarium_gateway/coap.py", "_contact"),
    ("reply", "/aiocoap/message.py", "encode"),
    ("reply", "/aiocoap/transports/udp6.py", "send"),
    ("coap parse", "/aiocoap/message.py", "decode"),
    ("coap (aiocoap machinery)", "/aiocoap/", ""),
    ("identity, route & admission", "preservarium_gateway/coap.py", ""),
    ("identity, route & admission", "preservarium_gateway/admission.py", ""),
    ("identity, route & admission", "preservarium_gateway/authn.py", ""),
    ("identity, route & admission", "preservarium_gateway/inflight.py", ""),
    ("identity, route & admission", "preservarium_gateway/identity.py", ""),
    ("identity, route & admission", "preservarium_gateway/directory.py", ""),
    ("identity, route & admission", "preservarium_gateway/rate_limits.py", ""),
    ("identity, route & admission", "preservarium/ids.py", ""),
    ("last seen", "preservarium_gateway/last_seen.py", ""),
    ("pipeline glue", "preservarium_gateway/contact.py", ""),
    ("event loop & tasks", "/asyncio/", ""),
    ("event loop & tasks", "selectors.py", ""),
    ("event loop & tasks", "", "<method 'run' of '_contextvars.Context' objects>"),
]
IDLE = frozenset({"<method 'poll' of 'select.epoll' objects>"})
ORDER = [
    "datagram guard & dedup", "coap parse", "coap (aiocoap machinery)",
    "identity, route & admission", "uuid & time", "raw record", "kafka send",
    "sandbox call (client)", "parsed record", "failed record", "command check", "reply",
    "last seen", "metrics", "logging", "pipeline glue", "event loop & tasks", "other",
]  # fmt: skip


def _rule(key: Key) -> str | None:
    file, _, name = key
    for stage, fragment, function in RULES:
        if (not fragment or fragment in file) and (not function or function == name):
            return stage
    return None


@dataclass
class Attribution:
    """Stage shares of each function, found through its callers."""

    entries: dict[Key, Any]
    _memo: dict[Key, dict[str, float]] = field(default_factory=dict)

    def shares(self, key: Key, depth: int = 0) -> dict[str, float]:
        found = self._memo.get(key)
        if found is not None:
            return found
        stage = _rule(key)
        if stage is not None:
            out = {stage: 1.0}
        elif depth > 12:
            out = {"other": 1.0}
        else:
            self._memo[key] = {"other": 1.0}  # a cycle resolves to "other"
            callers = self.entries[key][4] if key in self.entries else {}
            calls = sum(value[1] for value in callers.values()) or 1
            out = {}
            for caller, value in callers.items():
                for name, part in self.shares(caller, depth + 1).items():
                    out[name] = out.get(name, 0.0) + part * value[1] / calls
            out = out or {"other": 1.0}
        self._memo[key] = out
        return out


@dataclass
class Budget:
    """Per-contact µs of the main thread by stage, and the top functions by self time."""

    contacts: int
    profiled_us: float
    main_us: float
    stages: dict[str, float]
    top: list[tuple[str, float, float, float]]
    load: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"contacts": self.contacts, "profiled_us_per_contact": self.profiled_us,
                "main_thread_us_per_contact": self.main_us, "stages_us": self.stages,
                "top_self_us": self.top, "load": self.load}  # fmt: skip

    @staticmethod
    def render(data: dict[str, Any]) -> str:
        """The budget as a text table."""
        lines = [
            f"profile: {data['contacts']} contacts, {data['profiled_us_per_contact']:.0f} us "
            f"per contact under cProfile; scaled to {data['main_thread_us_per_contact']:.0f} us "
            "(the main thread without the profiler)",
            "stage                            us/contact   share",
        ]
        total = sum(data["stages_us"].values()) or 1.0
        for name, us in data["stages_us"].items():
            lines.append(f"{name:32} {us:9.1f}  {us / total:6.1%}")
        lines += ["", f"{'function (profiled, per contact)':60} {'self us':>8} {'cum us':>8} calls"]
        for name, self_us, cum_us, calls in data["top_self_us"]:
            lines.append(f"{name[-60:]:60} {self_us:8.1f} {cum_us:8.1f} {calls:5.2f}")
        return "\n".join(lines)


def _label(key: Key) -> str:
    file, line, name = key
    if file == "~":
        return name
    return f"{'/'.join(Path(file).parts[-2:])}:{line}({name})"


def contacts_in(entries: dict[Key, Any]) -> int:
    """Contacts the profile covers: calls of the raw record's builder (once per contact)."""
    return max((v[1] for k, v in entries.items() if k[2] == "raw_record"), default=0) or 1


def budget(path: Path, main_us: float, top: int = 40) -> Budget:
    """The budget from the profile at `path`, scaled so that the stages add up to
    `main_us`, the main thread's CPU per contact without the profiler."""
    entries: dict[Key, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    # Waiting for datagrams (wall clock in the profile) is not CPU.
    entries = {key: value for key, value in entries.items() if key[2] not in IDLE}
    contacts = contacts_in(entries)
    total = sum(value[2] for value in entries.values())
    profiled_us = total / contacts * 1e6
    scale = main_us / profiled_us if profiled_us else 0.0
    attribution = Attribution(entries)
    by_stage = dict.fromkeys(ORDER, 0.0)
    for key, value in entries.items():
        for stage, part in attribution.shares(key).items():
            by_stage[stage] = by_stage.get(stage, 0.0) + value[2] * part
    stages = {name: seconds / contacts * 1e6 * scale for name, seconds in by_stage.items()}
    ranked = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:top]
    rows = [(_label(key), tt / contacts * 1e6, ct / contacts * 1e6, nc / contacts)
            for key, (_, nc, tt, ct, _) in ranked]  # fmt: skip
    return Budget(contacts, profiled_us, main_us, stages, rows)
