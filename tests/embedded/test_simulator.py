"""The Efento simulator: its messages (checked by the shipped parser), its devices, its runs."""

from __future__ import annotations

import asyncio
import base64
import random
import struct
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from preservarium.settings import HostPort
from preservarium_tools import coapwire
from preservarium_tools.simulator import render
from preservarium_tools.simulator.efento_device import EfentoDevice, default_first_serial
from preservarium_tools.simulator.efento_wire import ConfigField, decode_configuration
from preservarium_tools.simulator.exchange import NoAnswerError, Retransmission
from preservarium_tools.simulator.outcomes import (
    Expectation,
    FeedUnavailableError,
    Outcome,
    OutcomeFeed,
)
from preservarium_tools.simulator.run import (
    Contact,
    ContactReport,
    SimulationPlan,
    gateway_routes,
    simulate,
)

from tests.embedded.efento_oracle import EfentoParser
from tests.support.net import free_port

NOW = 1_700_000_070  # 30 s after a minute mark


@pytest.fixture(scope="module")
def parser() -> EfentoParser:
    return EfentoParser()


def device(index: int = 0) -> EfentoDevice:
    return EfentoDevice.numbered(default_first_serial(), index, now=NOW - 120)


class TestMessages:
    def test_measurements_are_what_the_parser_expects(self, parser: EfentoParser) -> None:
        sensor = device()
        payload = sensor.measurements(NOW).encode()

        assert parser.identify(payload, "m") == "282c02000001"
        data = parser.parse(payload, "m")
        assert parser.warnings == []
        assert (data["serial_number"], data["measurement_period"]) == ("282c02000001", 60)
        assert (data["battery_ok"], data["battery_voltage"]) == (True, 3.6)
        assert data["transfer_reason"]["first_after_reset"] is True
        samples = data["measurements"]
        temperatures = [s for s in samples if s["type"] == "temperature"]
        humidities = [s for s in samples if s["type"] == "humidity"]
        # transmission interval 180 s / period 60 s: three samples a channel, newest on a mark.
        assert [s["timestamp"] for s in temperatures] == [NOW - 150, NOW - 90, NOW - 30]
        assert [s["timestamp"] for s in humidities] == [NOW - 150, NOW - 90, NOW - 30]
        assert all(15.0 <= s["value"] <= 27.0 for s in temperatures)
        assert all(30 <= s["value"] <= 65 for s in humidities)

    def test_only_the_first_measurements_follow_a_reset(self, parser: EfentoParser) -> None:
        sensor = device()
        sensor.measurements(NOW)
        data = parser.parse(sensor.measurements(NOW + 180).encode(), "m")
        assert data["transfer_reason"]["first_after_reset"] is False

    def test_device_info(self, parser: EfentoParser) -> None:
        sensor = device(1)
        sensor.sent(confirmable=True, answered=True)
        sensor.sent(confirmable=False, answered=True)
        data = parser.parse(sensor.device_info(NOW).encode(), "i")
        assert data["serial_number"] == "282c02000002"
        assert data["software_version"] == "07.07"
        assert data["up_time"] == 120
        assert data["battery_voltage"] == 3.6
        assert data["message_counters"] == {
            "confirmable_attempts": 1,
            "non_confirmable_attempts": 1,
            "successful": 2,
        }

    def test_configuration(self, parser: EfentoParser) -> None:
        data = parser.parse(device().configuration().encode(), "c")
        assert data["serial_number"] == "282c02000001"
        assert data["channel_types"] == ["temperature", "humidity"]
        assert data["configuration_errors"] == []
        assert (data["measurement_period_base"], data["transmission_interval"]) == (60, 180)

    def test_a_time_request_names_no_device(self, parser: EfentoParser) -> None:
        assert parser.identify(b"", "t") is None


class TestDownlinks:
    @pytest.mark.parametrize(
        ("hex_text", "expected"),
        [
            ("300140f4d0a7c206", ["device_info_request=true", "current_time=1749674100"]),
            (
                "103c188407d00105",
                [
                    "measurement_period_base=60",
                    "transmission_interval=900",
                    "measurement_period_factor=5",
                ],
            ),
        ],
    )
    def test_device_note_vectors(self, hex_text: str, expected: list[str]) -> None:
        assert [str(item) for item in decode_configuration(bytes.fromhex(hex_text))] == expected

    def test_unknown_fields_are_kept_by_number(self) -> None:
        assert decode_configuration(bytes.fromhex("f8030a")) == [ConfigField(63, None, 10)]

    def test_what_the_parser_formats_the_device_applies(self, parser: EfentoParser) -> None:
        params = {"measurement_period_base": 120, "transmission_interval": 600}
        sensor = device()
        requested = sensor.apply(decode_configuration(parser.format_command("set_config", params)))
        assert requested == []
        assert (sensor.settings.period_base, sensor.settings.transmission_interval) == (120, 600)
        assert sensor.settings.configuration_hash == 2
        data = parser.parse(sensor.measurements(NOW).encode(), "m")
        assert data["measurement_period"] == 120 and data["configuration_hash"] == 2
        assert len(data["measurements"]) == 2 * 5

    @pytest.mark.parametrize(
        ("command", "path"), [("request_device_info", "i"), ("request_configuration", "c")]
    )
    def test_requests_are_answered_next(
        self, parser: EfentoParser, command: str, path: str
    ) -> None:
        sensor = device()
        assert sensor.apply(decode_configuration(parser.format_command(command))) == [path]
        assert sensor.settings.configuration_hash == 1


class TestDevices:
    def test_readings_are_reproducible_per_serial(self) -> None:
        first, again, other = device(0), device(0), device(1)
        assert first.measurements(NOW).encode() == again.measurements(NOW).encode()
        assert first.measurements(NOW).encode() != other.measurements(NOW).encode()

    def test_readings_drift_but_stay_near_their_set_point(self) -> None:
        sensor = device()
        start = sensor.temperature.setpoint
        rng = random.Random(7)
        values = [sensor.temperature.advance(rng) for _ in range(2000)]
        assert len(set(values)) > 100
        assert all(abs(value - start) < 3 for value in values)


class TestExpectation:
    def record(self, **data: Any) -> dict[str, Any]:
        return {"device_id": "282c02000001", "data": data}

    def test_measurements_match_on_device_kind_and_newest_sample(self) -> None:
        expected = Expectation("282c02000001", "measurements", "", newest_timestamp=120)
        samples = [{"timestamp": 60}, {"timestamp": 120}]
        assert expected.matches("parsed", self.record(message="measurements", measurements=samples))
        older = [{"timestamp": 60}]
        assert not expected.matches(
            "parsed", self.record(message="measurements", measurements=older)
        )
        assert not expected.matches("parsed", self.record(message="device_info"))

    def test_failures_match_on_the_payload(self) -> None:
        expected = Expectation("282c02000001", "measurements", base64.b64encode(b"x").decode())
        assert expected.matches("failed", {"device_id": "282c02000001", "payload_b64": "eA=="})
        assert not expected.matches("failed", {"device_id": "282c02000001", "payload_b64": "eQ=="})


class TestRender:
    def report(self, outcome: Outcome | None, payload: bytes = b"") -> ContactReport:
        contact = Contact("282c02000001", "m", b"", True, 120)
        answer = coapwire.CoapMessage(
            coapwire.ACK, coapwire.code_number("2.01"), 1, b"", (), payload
        )
        return ContactReport(contact, answer, tuple(decode_configuration(payload)), None, outcome)

    def test_a_parsed_measurement(self) -> None:
        samples = [
            {"channel": 1, "type": "temperature", "timestamp": 60, "value": 21.3},
            {"channel": 1, "type": "temperature", "timestamp": 120, "value": 21.4},
            {"channel": 2, "type": "humidity", "timestamp": 60, "value": 44},
            {"channel": 2, "type": "humidity", "timestamp": 120, "value": 45},
        ]
        record = {"data": {"message": "measurements", "measurements": samples},
                  "parser": {"name": "efento", "version": 3}}  # fmt: skip
        line = render.contact_line(self.report(Outcome("parsed", record)))
        assert line == (
            "282c02000001 m CON 2.01 → parsed: temperature 21.4 °C, humidity 45 % "
            "(newest of 2 samples)  [efento v3]"
        )

    def test_a_failure_and_a_downlink(self) -> None:
        record = {"error": {"kind": "runtime_error", "message": "bad\nline"}}
        report = self.report(Outcome("failed", record), bytes.fromhex("103c"))
        assert render.contact_line(report).endswith("→ failed: runtime_error: bad\\x0aline")
        assert render.downlink_line(report) == "  ↳ downlink 103c: measurement_period_base=60"


@dataclass
class FakeGateway:
    """A CoAP server answering like the gateway: 2.01, the time on `t`, downlinks on CON."""

    downlinks: list[bytes] = field(default_factory=list)
    drop_first: int = 0
    # Acknowledge a CON at once and send its response this much later, on its own.
    separate_after_s: float | None = None
    seen: list[tuple[str, int]] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None
    answered: set[int] = field(default_factory=set)

    def datagram(self, data: bytes, remote: tuple[str, int]) -> None:
        request = coapwire.decode(data)
        if request.code == 0:  # the device's ACK of a separate response
            return
        path = "/".join(v.decode() for n, v in request.options if n == coapwire.URI_PATH)
        self.seen.append((path, request.mtype))
        if self.drop_first:
            self.drop_first -= 1
            return
        code, body = coapwire.code_number("2.01"), b""
        if path == ".well-known/core":
            code, body = coapwire.code_number("2.05"), b"</d>,</m>,</i>,</c>,</t>"
        elif path == "t":
            body = struct.pack(">I", int(time.time()))
        elif request.mtype == coapwire.CON and self.downlinks:
            body = self.downlinks.pop(0)
        assert self.transport is not None
        if self.separate_after_s is not None and request.mtype == coapwire.CON:
            empty = coapwire.CoapMessage(coapwire.ACK, 0, request.mid)
            self.transport.sendto(coapwire.encode(empty), remote)
            if request.mid in self.answered:  # a retransmission: acknowledged again only
                return
            self.answered.add(request.mid)
            separate = coapwire.CoapMessage(coapwire.CON, code, request.mid ^ 0x8000,
                                            request.token, (), body)  # fmt: skip
            later = asyncio.get_running_loop().call_later
            later(self.separate_after_s, self.transport.sendto, coapwire.encode(separate), remote)
            return
        mtype = coapwire.ACK if request.mtype == coapwire.CON else coapwire.NON
        answer = coapwire.CoapMessage(mtype, code, request.mid, request.token, (), body)
        self.transport.sendto(coapwire.encode(answer), remote)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, gateway: FakeGateway) -> None:
        self.gateway = gateway

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.gateway.datagram(data, addr)


@pytest.fixture
async def fake_gateway() -> AsyncIterator[tuple[FakeGateway, coapwire.CoapClient]]:
    gateway = FakeGateway()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Protocol(gateway), local_addr=("127.0.0.1", 0)
    )
    gateway.transport = transport
    port = transport.get_extra_info("sockname")[1]
    async with coapwire.CoapClient("127.0.0.1", port) as client:
        yield gateway, client
    transport.close()


FAST = Retransmission(ack_timeout_s=0.2, max_retransmit=2, non_timeout_s=1.0)


class TestRuns:
    async def test_a_device_boots_then_measures_and_obeys_downlinks(
        self, fake_gateway: tuple[FakeGateway, coapwire.CoapClient], parser: EfentoParser
    ) -> None:
        gateway, client = fake_gateway
        gateway.downlinks = [parser.format_command("request_configuration")]
        plan = SimulationPlan(
            gateway=HostPort("127.0.0.1", 0), count=3, interval_s=0.0, confirm_every=2, timing=FAST
        )
        reports: list[ContactReport] = []

        await simulate(plan, client=client, feed=None, report=reports.append)

        con, non = coapwire.CON, coapwire.NON
        # The downlink rides on the first CON with a device id (the `i`), so `c` comes next.
        assert gateway.seen == [("t", con), ("i", con), ("c", non), ("m", con), ("m", non),
                                ("m", con)]  # fmt: skip
        assert all(report.answered for report in reports)
        assert reports[0].answer is not None and len(reports[0].answer.payload) == 4
        assert [str(item) for item in reports[0].downlink] == []
        assert [str(item) for item in reports[1].downlink] == ["configuration_request=true"]

    async def test_a_lost_confirmable_request_is_sent_again(
        self, fake_gateway: tuple[FakeGateway, coapwire.CoapClient]
    ) -> None:
        gateway, client = fake_gateway
        gateway.drop_first = 1
        plan = SimulationPlan(gateway=HostPort("127.0.0.1", 0), count=1, timing=FAST)
        reports: list[ContactReport] = []

        await simulate(plan, client=client, feed=None, report=reports.append)

        assert gateway.seen[:2] == [("t", coapwire.CON), ("t", coapwire.CON)]
        assert [r.contact.path for r in reports] == ["t", "i", "m"]
        assert all(report.answered for report in reports)

    async def test_an_empty_ack_ends_retransmissions_and_the_separate_response_is_the_answer(
        self, fake_gateway: tuple[FakeGateway, coapwire.CoapClient]
    ) -> None:
        # A busy gateway acknowledges at once and answers later than a retransmission
        # would be due: the device waits for that answer instead of sending again.
        gateway, client = fake_gateway
        gateway.separate_after_s = 3 * FAST.ack_timeout_s
        plan = SimulationPlan(gateway=HostPort("127.0.0.1", 0), count=1, timing=FAST)
        reports: list[ContactReport] = []

        await simulate(plan, client=client, feed=None, report=reports.append)

        assert [r.contact.path for r in reports] == ["t", "i", "m"]
        assert [r.answer.dotted_code for r in reports if r.answer] == ["2.01"] * 3
        assert len(reports[0].answer.payload) == 4  # type: ignore[union-attr]
        assert [path for path, _ in gateway.seen] == ["t", "i", "m"]  # none sent twice

    async def test_routes_come_from_well_known_core(
        self, fake_gateway: tuple[FakeGateway, coapwire.CoapClient]
    ) -> None:
        _, client = fake_gateway
        assert await gateway_routes(client) == {"d", "m", "i", "c", "t"}

    async def test_a_silent_gateway_is_no_answer(self) -> None:
        loop = asyncio.get_running_loop()
        silent, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        try:
            port = silent.get_extra_info("sockname")[1]
            async with coapwire.CoapClient("127.0.0.1", port) as client:
                with pytest.raises(NoAnswerError):
                    await gateway_routes(client, timing=FAST)
        finally:
            silent.close()


class TestOutcomeFeed:
    def feed(self, bootstrap: str) -> OutcomeFeed:
        return OutcomeFeed(bootstrap=bootstrap, parsed_topic="p", failed_topic="f")

    async def test_without_aiokafka_it_says_which_extra_to_install(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "aiokafka", None)
        with pytest.raises(FeedUnavailableError, match=r"preservarium-sdk\[kafka\]"):
            await self.feed("127.0.0.1:9").start()

    async def test_an_unreachable_broker_is_unavailable(self) -> None:
        with pytest.raises(FeedUnavailableError, match="cannot reach Kafka"):
            await self.feed(f"127.0.0.1:{free_port()}").start()


async def test_every_device_can_send_a_given_token(
    fake_gateway: tuple[FakeGateway, coapwire.CoapClient],
) -> None:
    _, client = fake_gateway
    plan = SimulationPlan(gateway=HostPort("127.0.0.1", 0), count=1, timing=FAST, token="tok-1x")
    reports: list[ContactReport] = []
    await simulate(plan, client=client, feed=None, report=reports.append)
    sent = {report.contact.path: report.contact.payload for report in reports}
    assert b"tok-1x" in sent["m"] and b"tok-1x" in sent["i"]
