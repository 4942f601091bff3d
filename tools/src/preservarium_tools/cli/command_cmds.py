"""`preservarium command send` and `command cancel`, and the Kafka plumbing the CLI's
Kafka commands share.

aiokafka is the optional extra `kafka` (the sandbox image installs the SDK without it),
so it is imported only inside the commands that talk to Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from preservarium.contract.topics import COMMAND_REQUEST, COMMAND_STATUS, PARTITIONS
from preservarium.logs import quiet_aiokafka
from preservarium.usecases import commands as usecase
from preservarium.usecases.errors import InvalidInputError

from preservarium_tools.cli import command_list
from preservarium_tools.cli.common import err_console, fail, print_json, run, settings, stored_in
from preservarium_tools.cli.database import migrated_database

if TYPE_CHECKING:
    from preservarium.repositories import CommandRecord
    from preservarium.settings import Settings

T = TypeVar("T")
app = typer.Typer(help="Send, list and cancel commands to devices.", no_args_is_help=True)

CONNECT_TIMEOUT_S = 5.0
ACK_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 2.0


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
                await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
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
    """The `command.request` record the arguments describe (the use case's checks, the
    same as the API's); bad input exits 2."""
    try:
        return usecase.build_request(
            device_id, name, params=usecase.params_from_json(params_json),
            ttl_s=None if ttl_text is None else _ttl(ttl_text), request_id=request_id,
        )  # fmt: skip
    except InvalidInputError as exc:
        refuse(str(exc))


def _ttl(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        refuse(f"--ttl must be a whole number of seconds, got {text!r}")


async def publish(bootstrap: str, topic: str, *, key: bytes | None, value: bytes) -> None:
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
    topic = config.topic(COMMAND_REQUEST)
    body = usecase.send_command(one_shot(config.kafka_bootstrap), topic, record)
    run_kafka(config.kafka_bootstrap, body)
    if as_json:
        print_json(record)
        return
    note(f"{name} for {device_id} published on {topic}")
    print(record["request_id"])


async def require_registered(config: Settings, device_id: str) -> None:
    """NotFoundError, saying what to do, when `device_id` is not registered."""
    async with migrated_database(config) as engine:
        await usecase.require_registered(engine, device_id)


def one_shot(bootstrap: str) -> usecase.Publish:
    """The use cases' publish: a producer of its own for each record (the CLI sends one)."""

    async def send(topic: str, value: bytes, key: bytes | None) -> None:
        await publish(bootstrap, topic, key=key, value=value)

    return send


async def _cancel_stored(config: Settings, request_id: str) -> tuple[CommandRecord, bool]:
    async with migrated_database(config) as engine:
        return await usecase.cancel_stored(engine, request_id)


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
    record, now = run(lambda: _cancel_stored(config, request_id))
    topic = config.topic(COMMAND_STATUS)
    # The database says what happened; the status record only tells consumers. Say
    # so when it cannot be published, and how to publish it later.
    context = f"{request_id} is cancelled, but its status is not published (cancel it again): "
    body = usecase.publish_cancelled(one_shot(config.kafka_bootstrap), topic, record)
    run_kafka(config.kafka_bootstrap, body, context=context)
    stored_in(config)
    if as_json:
        print_json(command_list.command_json(record))
        return
    done = "cancelled" if now else "was cancelled already; status published again:"
    print(f"{record.request_id} {done} ({record.name} for {record.device_id})")
