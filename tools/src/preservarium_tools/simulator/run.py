"""A run of simulated Efento devices against a gateway, one report per contact.

Each device boots as a real one does: a time request (`t`, CON), its device info (`i`,
CON), then `count` measurement messages (`m`), confirmable every `confirm_every`-th so a
pending command can ride back, non-confirmable otherwise. A downlink is decoded and
applied; what it asks for (`i`, `c`) is sent on the next contacts.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from preservarium import protowire
from preservarium.settings import HostPort

from preservarium_tools import coapwire
from preservarium_tools.simulator.efento_device import EfentoDevice, default_first_serial
from preservarium_tools.simulator.efento_wire import ConfigField, decode_configuration
from preservarium_tools.simulator.exchange import NoAnswerError, Retransmission, exchange
from preservarium_tools.simulator.outcomes import (
    Expectation,
    FeedUnavailableError,
    Outcome,
    OutcomeFeed,
)

MESSAGES = {"m": "measurements", "i": "device_info", "c": "configuration", "t": "time_request"}
PROBE_TIMING = Retransmission(ack_timeout_s=1.0, max_retransmit=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationPlan:
    """What to simulate."""

    gateway: HostPort
    devices: int = 1
    count: int = 3
    interval_s: float = 2.0
    confirm_every: int = 2
    first_serial: bytes = field(default_factory=default_first_serial)
    outcome_timeout_s: float = 5.0
    timing: Retransmission = field(default_factory=Retransmission)
    # The cloud_token every device sends (its credential when registered with a token);
    # None: each sends an IMEI-like number, as unconfigured sensors do.
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Contact:
    """One message a device is about to send."""

    device_id: str
    path: str
    payload: bytes
    confirmable: bool
    newest_timestamp: int | None = None

    def expectation(self) -> Expectation:
        """How its record on the parsed or failed topic will be recognised."""
        return Expectation(
            device_id=None if self.path == "t" else self.device_id,
            message=MESSAGES[self.path],
            payload_b64=base64.b64encode(self.payload).decode("ascii"),
            newest_timestamp=self.newest_timestamp,
        )


@dataclass(frozen=True, slots=True)
class ContactReport:
    """What happened to one contact."""

    contact: Contact
    answer: coapwire.CoapMessage | None
    downlink: tuple[ConfigField, ...] = ()
    downlink_error: str | None = None
    outcome: Outcome | None = None
    outcome_note: str | None = None

    @property
    def answered(self) -> bool:
        """True for a 2.xx answer."""
        return self.answer is not None and self.answer.code >> 5 == 2


Reporter = Callable[[ContactReport], None]


async def gateway_routes(
    client: coapwire.CoapClient, *, timing: Retransmission = PROBE_TIMING
) -> set[str]:
    """The paths the gateway lists in /.well-known/core (NoAnswerError when it is silent)."""
    answer = await exchange(
        client, coapwire.GET, "/.well-known/core", confirmable=True, timing=timing
    )
    links = answer.payload.decode("utf-8", "replace").split(",")
    return {link.split(">")[0].lstrip("</") for link in links if link.startswith("<")}


async def simulate(
    plan: SimulationPlan,
    *,
    client: coapwire.CoapClient,
    feed: OutcomeFeed | None,
    report: Reporter,
) -> None:
    """Run every device of `plan` at once, each staggered a little after the previous."""
    now = int(time.time())
    devices = [EfentoDevice.numbered(plan.first_serial, i, now=now) for i in range(plan.devices)]
    if plan.token is not None:
        for device in devices:
            device.cloud_token = plan.token
    stagger_s = plan.interval_s / max(1, plan.devices)
    async with asyncio.TaskGroup() as group:
        for index, device in enumerate(devices):
            runner = DeviceRun(device, plan=plan, client=client, feed=feed, report=report)
            group.create_task(runner.run(delay_s=index * stagger_s))


class DeviceRun:
    """The contacts of one device, one after the other."""

    def __init__(
        self,
        device: EfentoDevice,
        *,
        plan: SimulationPlan,
        client: coapwire.CoapClient,
        feed: OutcomeFeed | None,
        report: Reporter,
    ) -> None:
        self.device = device
        self.plan = plan
        self._client = client
        self._feed = feed
        self._report = report
        self._next: deque[str] = deque(["t", "i"])  # what a device sends after booting
        self._measured = 0

    async def run(self, *, delay_s: float = 0.0) -> None:
        """Every contact of the plan, measurements `interval_s` apart."""
        await asyncio.sleep(delay_s)
        while self._next or self._measured < self.plan.count:
            path = self._next.popleft() if self._next else "m"
            report = await self.contact(self.build(path))
            self._report(report)
            if path == "m" and self._measured < self.plan.count and not self._next:
                await asyncio.sleep(self.plan.interval_s)

    def build(self, path: str) -> Contact:
        """The next message on `path`."""
        device, now = self.device, int(time.time())
        if path == "m":
            confirmable = self._measured % self.plan.confirm_every == 0
            self._measured += 1
            message = device.measurements(now)
            first = message.channels[0]
            newest = first.timestamp + (len(first.samples) - 1) * device.settings.period
            return Contact(device.device_id, "m", message.encode(), confirmable, newest)
        if path == "i":
            return Contact(device.device_id, "i", device.device_info(now).encode(), True)
        if path == "c":  # confirmable only when it reports errors, and it reports none
            return Contact(device.device_id, "c", device.configuration().encode(), False)
        return Contact(device.device_id, "t", b"", True)

    async def contact(self, contact: Contact) -> ContactReport:
        """Send one message; decode and apply its downlink; wait for its record."""
        expected = self._feed.expect(contact.expectation()) if self._feed else None
        try:
            answer = await exchange(
                self._client,
                coapwire.POST,
                f"/{contact.path}",
                contact.payload,
                confirmable=contact.confirmable,
                timing=self.plan.timing,
            )
        except NoAnswerError:
            answer = None
        report = ContactReport(contact, answer)
        self.device.sent(confirmable=contact.confirmable, answered=report.answered)
        report = self._with_downlink(report)
        return await self._with_outcome(report, expected)

    def _with_downlink(self, report: ContactReport) -> ContactReport:
        answer = report.answer
        if answer is None or not answer.payload or report.contact.path == "t":
            return report
        try:
            fields = decode_configuration(answer.payload)
        except protowire.WireError as exc:
            return replace(report, downlink_error=str(exc))
        self._next.extend(self.device.apply(fields))
        return replace(report, downlink=tuple(fields))

    async def _with_outcome(
        self, report: ContactReport, expected: asyncio.Future[Outcome] | None
    ) -> ContactReport:
        if expected is None:
            return report
        if not report.answered:  # nothing was stored, so nothing will be published
            expected.cancel()
            return report
        timeout_s = self.plan.outcome_timeout_s
        try:
            outcome = await asyncio.wait_for(expected, timeout_s)
        except TimeoutError:
            return replace(report, outcome_note=f"no parsed record within {timeout_s:g} s")
        except FeedUnavailableError as exc:
            return replace(report, outcome_note=str(exc))
        return replace(report, outcome=outcome)
