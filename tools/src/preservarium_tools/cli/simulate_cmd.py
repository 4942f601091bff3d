"""`preservarium simulate efento`: realistic Efento uplinks over real CoAP, and their fate."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import typer
from preservarium.contract import topics
from preservarium.settings import HostPort, Settings, parse_host_port

from preservarium_tools import coapwire
from preservarium_tools.cli.common import console, err_console, fail, settings
from preservarium_tools.simulator import render
from preservarium_tools.simulator.exchange import NoAnswerError
from preservarium_tools.simulator.outcomes import FeedUnavailableError, OutcomeFeed
from preservarium_tools.simulator.run import ContactReport, SimulationPlan, gateway_routes, simulate

app = typer.Typer(help="Simulate devices against a running gateway.", no_args_is_help=True)

EFENTO_PATHS = ("m", "i", "c", "t")
SERIAL_BYTES = 6


@dataclass(slots=True)
class Tally:
    """What the run's contacts came to."""

    contacts: int = 0
    answered: int = 0
    parsed: int = 0
    failed: int = 0
    downlinks: int = 0

    def add(self, report: ContactReport) -> None:
        """Count one contact."""
        self.contacts += 1
        self.answered += report.answered
        self.downlinks += bool(report.downlink or report.downlink_error)
        if report.outcome is not None:
            self.parsed += report.outcome.topic == "parsed"
            self.failed += report.outcome.topic == "failed"

    def __str__(self) -> str:
        return (
            f"{self.contacts} contacts: {self.answered} answered 2.xx, {self.parsed} parsed, "
            f"{self.failed} failed, {self.downlinks} with a downlink"
        )


@app.command("efento")
def efento(
    devices: int = typer.Option(1, "--devices", min=1, max=10_000, metavar="N"),
    count: int = typer.Option(
        3, "--count", min=1, metavar="M", help="Measurement messages per device."
    ),
    gateway: str = typer.Option("127.0.0.1:5683", "--gateway", metavar="HOST:PORT"),
    interval: float = typer.Option(
        2.0, "--interval", min=0.0, metavar="S", help="Seconds between a device's measurements."
    ),
    confirm_every: int = typer.Option(
        2, "--confirm-every", min=1, metavar="K", help="Every K-th measurement is CON (1 = all)."
    ),
    first_serial: str = typer.Option(
        "282c02000001", "--first-serial", metavar="HEX", help="Serial of the first device."
    ),
    no_records: bool = typer.Option(
        False, "--no-records", help="Do not follow the parsed and failed topics."
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        metavar="TOKEN",
        help="The cloud_token each device sends: its token from `device register --auth token`.",
    ),
) -> None:
    """Send realistic Efento uplinks over CoAP; show the answers, downlinks and parsed records.

    Each device boots like a real sensor (a time request `t`, then its device info `i`),
    then sends M measurement messages (`m`) of drifting temperature and humidity samples.
    A downlink in an answer is decoded and applied. Parsed records are read from Kafka
    (PRESERVARIUM_KAFKA_BOOTSTRAP). Exit 0 when every contact was answered 2.xx, 1 when
    one was not, 2 when the gateway does not answer at all.
    """
    plan = SimulationPlan(
        gateway=_address(gateway),
        devices=devices,
        count=count,
        interval_s=interval,
        confirm_every=confirm_every,
        first_serial=_serial(first_serial),
        token=token,
    )
    config = settings()
    tally = Tally()
    try:
        asyncio.run(_run(plan, config, tally, follow=not no_records))
    except NoAnswerError:
        fail(f"no answer from the gateway at {plan.gateway}: is preservarium up running?", 2)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    err_console.print(str(tally), markup=False, highlight=False)
    if tally.answered < tally.contacts:
        raise SystemExit(1)


async def _run(plan: SimulationPlan, config: Settings, tally: Tally, *, follow: bool) -> None:
    address = plan.gateway
    async with coapwire.CoapClient(address.host, address.port) as client:
        missing = [path for path in EFENTO_PATHS if path not in await gateway_routes(client)]
        if missing:
            err_console.print(
                f"the gateway has no route for {', '.join(missing)}: start it with "
                "PRESERVARIUM_COAP_ROUTES=m=efento,i=efento,c=efento,t=efento",
                markup=False,
                highlight=False,
            )
        feed = await _feed(config) if follow else None

        def report(contact: ContactReport) -> None:
            tally.add(contact)
            _show(contact)

        try:
            await simulate(plan, client=client, feed=feed, report=report)
        finally:
            if feed is not None:
                await feed.stop()


async def _feed(config: Settings) -> OutcomeFeed | None:
    feed = OutcomeFeed(
        bootstrap=config.kafka_bootstrap,
        parsed_topic=config.topic(topics.PARSED),
        failed_topic=config.topic(topics.FAILED),
    )
    try:
        await feed.start()
    except FeedUnavailableError as exc:
        err_console.print(f"cannot show parsed records: {exc}", markup=False, highlight=False)
        return None
    return feed


def _show(report: ContactReport) -> None:
    console.print(render.contact_line(report), markup=False, highlight=False, soft_wrap=True)
    downlink = render.downlink_line(report)
    if downlink is not None:
        console.print(downlink, markup=False, highlight=False, soft_wrap=True)


def _address(text: str) -> HostPort:
    try:
        address = parse_host_port(text)
    except ValueError as exc:
        fail(f"--gateway: {exc}", 2)
    if address.port == 0:
        fail("--gateway: the port must not be 0", 2)
    return address


def _serial(text: str) -> bytes:
    try:
        serial = bytes.fromhex(text)
    except ValueError:
        serial = b""
    if len(serial) != SERIAL_BYTES:
        fail(f"--first-serial: expected {2 * SERIAL_BYTES} hex digits, got {text!r}", 2)
    return serial
