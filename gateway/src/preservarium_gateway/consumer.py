"""The `command.request` consumer: validate, store durably, then commit the offset.

Every record ends with its offset committed and, unless it is a redelivery, one status:
`queued` once stored, `rejected` (with the reason) when it is invalid or the database
refuses it. A poison record therefore never stops the loop nor comes back after a
restart. Only a failure that may pass (the broker or the database unreachable) stops
a batch before its offsets are committed, so nothing is lost: those records come again.
Anything else unexpected is left to the loop's supervisor (logged, counted, restarted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaClient, AIOKafkaConsumer
from aiokafka.errors import InvalidSessionTimeoutError, KafkaError
from aiokafka.protocol.group import LeaveGroupRequest
from aiokafka.structs import ConsumerRecord, TopicPartition
from preservarium.contract.command_requests import CommandRequest, Rejection, read_command_request
from preservarium.db.models import utcnow
from preservarium.errors import RepositoryError
from preservarium.lifecycle import AsyncLifecycle
from preservarium.supervisor import Supervisor

from preservarium_gateway.commands import CommandDesk
from preservarium_gateway.config import GatewayLimits

log = logging.getLogger("preservarium.gateway.consumer")
STOP_TIMEOUT_S = 10.0
LEAVE_TIMEOUT_S = 1.0
COMMIT_TIMEOUT_S = 5.0


def is_transient(exc: BaseException) -> bool:
    """A failure that may pass by itself: the record is worth reading again. A session
    the broker refuses (Kafka takes 6 s to 30 min by default) is a configuration error:
    it goes to the supervisor, which logs it and shows the consumer down."""
    if isinstance(exc, InvalidSessionTimeoutError):
        return False
    return isinstance(exc, KafkaError | OSError) or bool(getattr(exc, "retriable", False))


class CommandConsumer(AsyncLifecycle):
    """Owns the consumer loop; start()/stop(), stop() idempotent."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        group: str,
        desk: CommandDesk,
        limits: GatewayLimits,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._group = group
        self._desk = desk
        self._limits = limits
        self._supervisor = supervisor or Supervisor()
        self._task: asyncio.Task[None] | None = None
        self._live: AIOKafkaConsumer | None = None
        self._starting: AIOKafkaConsumer | None = None  # in its first join

    async def start(self) -> None:
        """Consume in the background (connecting, and reconnecting, as the broker allows)."""
        self._task = self._supervisor.spawn("command-consumer", self._run)

    async def stop(self) -> None:
        """Stop consuming; idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close()

    @property
    def joined(self) -> bool:
        """True once the group gave this gateway its partitions of `command.request`."""
        return self._live is not None and bool(self._live.assignment())

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            self._topic,
            bootstrap_servers=self._bootstrap,
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            retry_backoff_ms=200,
            metadata_max_age_ms=5000,
            session_timeout_ms=round(self._limits.command_session_timeout_s * 1000),
            heartbeat_interval_ms=round(self._limits.command_session_timeout_s * 1000 / 3),
        )

    async def _run(self) -> None:
        delay = 0.2
        while True:
            try:
                consumer = await self._connected()
                delay = 0.2
                await self._consume(consumer)
            except (KafkaError, OSError, RepositoryError) as exc:
                if not is_transient(exc):
                    raise
                log.warning("command consumer restarting", extra={"error": repr(exc)})
                await self._close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _connected(self) -> AIOKafkaConsumer:
        """The consumer, started; after a supervised restart the same one (joining the
        group again costs seconds), rewound to what was committed."""
        if self._live is not None:
            await _rewind(self._live)
            return self._live
        consumer = self._starting = self._consumer()
        try:
            await consumer.start()
        except BaseException:
            try:
                await _abandon_first_join(consumer, self._bootstrap, self._group)
            finally:
                await _stop_quietly(consumer)
            raise
        finally:
            self._starting = None
        self._live = consumer
        return consumer

    async def _close(self) -> None:
        consumer, self._live = self._live, None
        if consumer is not None:
            await _stop_quietly(consumer)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=200)
            done: dict[TopicPartition, int] = {}
            try:
                for partition, records in batches.items():
                    for record in records:
                        await self._handle(record)
                        done[partition] = record.offset + 1
            except BaseException:
                # Whatever was settled stays settled: commit it before leaving.
                await _commit_quietly(consumer, done)
                raise
            if done:
                await consumer.commit(done)

    async def _handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Settle one record; raises only what makes the record worth reading again."""
        request = read_command_request(
            record.value,
            now=utcnow(),
            default_ttl_s=self._limits.default_command_ttl_s,
            max_ttl_s=self._limits.max_command_ttl_s,
        )
        if isinstance(request, Rejection):
            log.info("command request rejected", extra={"reason": request.reason,
                     "offset": record.offset})  # fmt: skip
            self._desk.reject(request)
            return
        try:
            await self._desk.store(request)
        except Exception as exc:
            if is_transient(exc):
                raise
            self._poisoned(record, request, exc)

    def _poisoned(
        self, record: ConsumerRecord[bytes, bytes], request: CommandRequest, exc: Exception
    ) -> None:
        """A valid-looking request that cannot be stored: report it, never read it again."""
        log.error("command request not stored", exc_info=exc,
                  extra={"offset": record.offset, "partition": record.partition})  # fmt: skip
        reason = "the gateway could not store the command"
        self._desk.reject(Rejection(reason, request.request_id, request.device_id))


async def _rewind(consumer: AIOKafkaConsumer) -> None:
    """Read again from the committed offsets what a failure left unsettled."""
    for partition in consumer.assignment():
        committed = await consumer.committed(partition)
        if committed:
            consumer.seek(partition, committed)
        else:
            await consumer.seek_to_beginning(partition)


async def _stop_quietly(consumer: AIOKafkaConsumer) -> None:
    # Leaving the group politely waits for a join in progress (seconds); bound it so a
    # broker that stopped answering cannot hold the gateway's shutdown.
    with contextlib.suppress(KafkaError, OSError, TimeoutError):
        await asyncio.wait_for(consumer.stop(), STOP_TIMEOUT_S)


async def _abandon_first_join(consumer: AIOKafkaConsumer, bootstrap: str, group: str) -> None:
    """A consumer whose start() (its first join) did not finish never had partitions: it
    has nothing to commit or hand over. End its join now rather than wait for the group
    to form (3 s on Kafka, half the session on Tansu), which held every stop in the first
    seconds of a gateway (Ctrl-C on `up`); a consumer that had partitions leaves politely
    instead (aiokafka's stop).

    aiokafka's stop() awaits its coordination task, which sits in JoinGroup until the
    broker answers; that task is cancelled here (aiokafka re-raises the cancellation).
    The broker already gave the member its id (KIP-394) and would make the group's next
    join wait for it until its session ends: a LeaveGroup tells it the member is gone.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    joining = getattr(coordinator, "_coordination_task", None)
    if not isinstance(joining, asyncio.Task) or joining.done():
        return
    joining.cancel()
    await asyncio.wait([joining])  # our own cancellation still comes through
    if not joining.cancelled():
        joining.exception()  # it failed first: nothing to report at a stop
    member = getattr(coordinator, "member_id", "")
    node = getattr(coordinator, "coordinator_id", None)
    if isinstance(member, str) and member and isinstance(node, int):
        await _leave(bootstrap, node, group, member)


async def _leave(bootstrap: str, node: int, group: str, member: str) -> None:
    """Best effort, within LEAVE_TIMEOUT_S, on a connection of its own: the consumer's
    connection to the coordinator still carries the JoinGroup, and a broker answers one
    request of a connection at a time."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    try:
        async with asyncio.timeout(LEAVE_TIMEOUT_S):
            await client.bootstrap()
            await client.send(node, LeaveGroupRequest(group, member))
        log.info("left the group before joining it", extra={"member": member})
    except (KafkaError, OSError, TimeoutError) as exc:
        log.info("left the group without a goodbye", extra={"error": repr(exc)})
    finally:
        await client.close()


async def _commit_quietly(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
    if not offsets:
        return
    with contextlib.suppress(KafkaError, OSError, TimeoutError):
        await asyncio.wait_for(consumer.commit(offsets), COMMIT_TIMEOUT_S)
