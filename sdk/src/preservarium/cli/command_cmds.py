"""`preservarium command send` and `command cancel`, and the Kafka plumbing the CLI's
Kafka commands share.

aiokafka is the optional extra `kafka` (the sandbox image installs the SDK without it),
so it is imported only inside the commands that talk to Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from preservarium.cli import command_list
from preservarium.cli.common import err_console, fail, print_json, run, settings, stored_in
from preservarium.cli.database import migrated_database
from preservarium.command_requests import (
    MAX_NAME,
    MAX_REQUEST_ID,
    MAX_TTL_S,
    CommandRequestError,
    Rejection,
    loads_strict,
    validate_command_record,
)
from preservarium.errors import NotFoundError
from preservarium.ids import is_device_id
from preservarium.kafka_records import quiet_aiokafka

if TYPE_CHECKING:
    from preservarium.repositories import CommandRecord
    from preservarium.settings import Settings

T = TypeVar("T")
app = typer.Typer(help="Send, list and cancel commands to devices.", no_args_is_help=True)

CONNECT_TIMEOUT_S = 5.0
ACK_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 2.0
# The gateway creates its topics with this many partitions; a topic the CLI creates
# first must look the same.
TOPIC_PARTITIONS = 3
MAX_RECORD_BYTES = 64 * 1024
REQUEST_TOPIC = "command.request"
STATUS_TOPIC = "command.status"
RECORD_VERSION = 1


def refuse(message: str) -> NoReturn:
    """Bad input or unreachable infrastructure: one line, exit 2 (the message is literal)."""
    fail(message, code=2)


def require_aiokafka() -> None:
    """Exit 2 with one line when the `kafka` extra is not installed; silence its logs."""
    try:
        import aiokafka  # noqa: F401
    except ImportError:
        refuse("this command needs Kafka support: pip install 'preservarium-sdk[kafka]'")
    quiet_aiokafka()


def run_kafka(bootstrap: str, body: Coroutine[Any, Any, T], *, context: str = "") -> T:
    """Run a Kafka command body; a broker that cannot be reached is one line, exit 2
    (`context` first, when what was done before must be said)."""
    from aiokafka.errors import KafkaError

    try:
        return asyncio.run(body)
    except (KafkaError, OSError, TimeoutError) as exc:
        unreachable(bootstrap, exc, context=context)


def note(text: str) -> None:
    """A line for the human on stderr, printed as is (it may quote user input)."""
    err_console.print(text, highlight=False, markup=False, soft_wrap=True)


def unreachable(bootstrap: str, exc: BaseException, *, context: str = "") -> NoReturn:
    """The one line for a broker that did not answer."""
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        reason = "no answer in time"
    refuse(f"{context}cannot reach Kafka at {bootstrap} (PRESERVARIUM_KAFKA_BOOTSTRAP): {reason}")


async def ensure_topic(bootstrap: str, topic: str) -> None:
    """Create `topic` if it does not exist yet, shaped as the gateway would create it."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="preservarium-cli")
    try:
        await admin.start()
        if topic not in set(await admin.list_topics()):
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(topic, TOPIC_PARTITIONS, 1)])
    finally:
        await admin.close()


def build_request(
    device_id: str,
    name: str,
    *,
    params_json: str | None,
    ttl_text: str | None,
    request_id: str | None,
) -> dict[str, Any]:
    """The `command.request` record the arguments describe; bad input exits 2.

    The record is checked by the rules the gateway applies to what it reads, so a
    command this prints a request_id for is never `rejected` as invalid.
    """
    if not is_device_id(device_id):
        refuse(f"invalid device id {device_id!r}: use 1 to 64 characters of A-Z a-z 0-9 . _ : -")
    if not 1 <= len(name) <= MAX_NAME:
        refuse(f"invalid command name: use 1 to {MAX_NAME} characters")
    if request_id is not None and not 1 <= len(request_id) <= MAX_REQUEST_ID:
        refuse(f"invalid request id: use 1 to {MAX_REQUEST_ID} characters")
    record: dict[str, Any] = {
        "v": 1,
        "request_id": request_id or uuid.uuid4().hex,
        "device_id": device_id,
        "command": name,
        "params": _params(params_json),
    }
    if ttl_text is not None:
        record["ttl_s"] = _ttl(ttl_text)
    checked = validate_command_record(record, now=datetime.now(UTC))
    if isinstance(checked, Rejection):
        refuse(f"invalid command: {checked.reason}")
    if len(encode(record)) > MAX_RECORD_BYTES:
        refuse(f"the command is over {MAX_RECORD_BYTES} bytes once encoded")
    return record


def _params(text: str | None) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        params = loads_strict(text)
    except CommandRequestError as exc:
        refuse(f"--params: {exc.reason}")
    if not isinstance(params, dict):
        refuse(f"--params must be a JSON object, got {type(params).__name__}")
    return params


def _ttl(text: str) -> int:
    try:
        ttl = int(text)
    except ValueError:
        refuse(f"--ttl must be a whole number of seconds, got {text!r}")
    if not 0 < ttl <= MAX_TTL_S:
        refuse(f"--ttl must be from 1 to {MAX_TTL_S} seconds (30 days), got {ttl}")
    return ttl


def encode(record: dict[str, Any]) -> bytes:
    """A record value: compact UTF-8 JSON."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def publish(bootstrap: str, topic: str, *, key: bytes, value: bytes) -> None:
    """Publish one record with acks=all and wait for the acknowledgement (bounded)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, client_id="preservarium-cli", acks="all"
    )
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await ensure_topic(bootstrap, topic)
            await producer.start()
        async with asyncio.timeout(ACK_TIMEOUT_S):
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await stop_quietly(producer)


async def stop_quietly(client: Any) -> None:
    """Stop an aiokafka client; closing politely can hang on a dead broker, so bound it."""
    from aiokafka.errors import KafkaError

    with contextlib.suppress(KafkaError, OSError, TimeoutError):
        await asyncio.wait_for(client.stop(), STOP_TIMEOUT_S)


@app.command("send")
def send(
    device_id: str = typer.Argument(..., metavar="ID"),
    name: str = typer.Argument(..., metavar="NAME"),
    params: str | None = typer.Option(None, "--params", metavar="JSON", help="A JSON object."),
    ttl: str | None = typer.Option(
        None, "--ttl", metavar="SECONDS", help="Expire after this long (default 86400)."
    ),
    request_id: str | None = typer.Option(
        None, "--request-id", metavar="RID", help="Your own request id (default: a new UUID)."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Send to a device that is not registered: a device reached on a route needs no "
        "registration, and its command waits for its first contact (until it expires).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the published record."),
) -> None:
    """Publish a command request for device ID; print its request_id.

    ID must be registered (`preservarium device register`), unless --force.
    """
    record = build_request(device_id, name, params_json=params, ttl_text=ttl, request_id=request_id)
    config = settings()
    if not force:
        run(lambda: require_registered(config, device_id))
    require_aiokafka()
    topic = config.topic(REQUEST_TOPIC)
    body = publish(config.kafka_bootstrap, topic, key=device_id.encode(), value=encode(record))
    run_kafka(config.kafka_bootstrap, body)
    if as_json:
        print_json(record)
        return
    note(f"{name} for {device_id} published on {topic}")
    print(record["request_id"])


async def require_registered(config: Settings, device_id: str) -> None:
    """NotFoundError, saying what to do, when `device_id` is not registered."""
    from preservarium.repositories import SQLDeviceRepository

    async with migrated_database(config) as engine:
        try:
            await SQLDeviceRepository(engine).get(device_id)
        except NotFoundError:
            raise NotFoundError(
                f"device {device_id!r} is not registered: register it (preservarium device "
                f"register {device_id} --type TYPE), or, for a device reached on a route "
                "(no registration needed), pass --force"
            ) from None


app.command("list")(command_list.list_commands)


@app.command("cancel")
def cancel(
    request_id: str = typer.Argument(..., metavar="REQUEST_ID"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Cancel a queued command: it is never sent, and is reported `expired` (reason
    "cancelled") on command.status, as the gateway reports the commands it expires.

    A command a gateway is sending right now, or that has ended, cannot be cancelled.

    Cancelling it again publishes its status again (when Kafka was unreachable).
    """
    config = settings()
    require_aiokafka()
    record, now = run(lambda: command_list.cancel_stored(config, request_id))
    topic = config.topic(STATUS_TOPIC)
    value = encode(cancelled_status(record, at=datetime.now(UTC)))
    # The database says what happened; the status record only tells consumers. Say
    # so when it cannot be published, and how to publish it later.
    context = f"{request_id} is cancelled, but its status is not published (cancel it again): "
    body = publish(config.kafka_bootstrap, topic, key=record.device_id.encode(), value=value)
    run_kafka(config.kafka_bootstrap, body, context=context)
    stored_in(config)
    if as_json:
        print_json(command_list.command_json(record))
        return
    done = "cancelled" if now else "was cancelled already; status published again:"
    print(f"{record.request_id} {done} ({record.name} for {record.device_id})")


def cancelled_status(record: CommandRecord, *, at: datetime) -> dict[str, Any]:
    """The `command.status` record of a cancelled command, as the gateway writes one."""
    return {
        "v": RECORD_VERSION,
        "request_id": record.request_id,
        "device_id": record.device_id,
        "status": "expired",
        "at": at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "reason": command_list.CANCEL_REASON,
    }
