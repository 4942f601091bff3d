"""The Kafka publisher: acks=all, bounded waits, and a connection that comes back by itself.

`publish` waits for the broker's acknowledgement (the raw record: the device's answer
waits for it). `publish_later` does not make its caller wait (the parsed and failed
records): the records queue up in order and one supervised sender task hands them to the
producer, whose acknowledgements are observed by callbacks. That costs no task and no
timer per record; a record's wait is bounded by the producer's own request timeout
(`timeout_s` + 1 s, where `publish` gives up at `timeout_s`), after which it fails and is
logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from preservarium.lifecycle import AsyncLifecycle
from preservarium.supervisor import Supervisor

from preservarium_gateway.errors import PublishError

log = logging.getLogger("preservarium.gateway.kafka")

Observer = Callable[[str, float, bool], None]


class KafkaPublisher(AsyncLifecycle):
    """Publishes records; publish() returns only once the broker acknowledged the record."""

    def __init__(
        self,
        bootstrap: str,
        *,
        timeout_s: float,
        client_id: str = "preservarium-gateway",
        on_publish: Observer | None = None,
        topics: tuple[str, ...] = (),
        partitions: int = 1,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._timeout_s = timeout_s
        self._client_id = client_id
        self._on_publish = on_publish or (lambda topic, seconds, ok: None)
        self._producer: AIOKafkaProducer | None = None
        self._connector: asyncio.Task[None] | None = None
        # publish_later: (topic, value, key, when queued), in order, for the sender task.
        self._queue: deque[tuple[str, bytes, bytes | None, float]] = deque()
        self._queued = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._unsettled = 0  # queued or handed to the producer, not yet acknowledged
        self._settled = asyncio.Event()
        self._settled.set()
        self._closing = False
        self._topics = topics
        self._partitions = partitions
        self._supervisor = supervisor or Supervisor()

    @property
    def connected(self) -> bool:
        """True once the producer has reached the cluster."""
        return self._producer is not None

    async def start(self) -> None:
        """Try to connect now; if the broker is down, keep trying in the background."""
        self._closing = False
        if self._sender is None:
            self._sender = self._supervisor.spawn("kafka-send-later", self._send_queued)
        if not await self._connect_once():
            self._connector = self._supervisor.spawn("kafka-connect", self._connect_loop)

    async def _connect_once(self) -> bool:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",
            linger_ms=0,
            request_timeout_ms=int(self._timeout_s * 1000) + 1000,
            retry_backoff_ms=100,
        )
        try:
            await ensure_topics(self._bootstrap, self._topics, partitions=self._partitions)
            await producer.start()
        except (KafkaError, OSError) as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            log.warning(
                "kafka unavailable", extra={"bootstrap": self._bootstrap, "error": str(exc)}
            )
            return False
        except asyncio.CancelledError:  # stop() during an attempt: close what it opened
            with contextlib.suppress(Exception):
                await asyncio.shield(producer.stop())
            raise
        self._producer = producer
        log.info("kafka connected", extra={"bootstrap": self._bootstrap})
        return True

    async def _connect_loop(self) -> None:
        delay = 0.2
        while not self._closing and not await self._connect_once():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def publish(self, topic: str, value: bytes, key: bytes | None) -> None:
        """Publish and wait for the acknowledgement; PublishError if it does not come in time."""
        producer = self._producer
        if producer is None:
            self._on_publish(topic, 0.0, False)
            raise PublishError("kafka is not connected")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout_s):
                delivery = await producer.send(topic, value=value, key=key)
                await delivery
        except (KafkaError, TimeoutError, OSError) as exc:
            self._on_publish(topic, time.perf_counter() - started, False)
            raise PublishError(f"kafka did not acknowledge a record on {topic}: {exc!r}") from exc
        self._on_publish(topic, time.perf_counter() - started, True)

    def publish_later(self, topic: str, value: bytes, key: bytes | None) -> None:
        """Publish without making the caller wait; a failure is logged and counted."""
        self._queue.append((topic, value, key, time.perf_counter()))
        self._unsettled += 1
        self._settled.clear()
        self._queued.set()

    async def _send_queued(self) -> None:
        """The sender task: hand each queued record to the producer, oldest first."""
        while True:
            if not self._queue:
                self._queued.clear()
                await self._queued.wait()
                continue
            topic, value, key, queued_at = self._queue.popleft()
            try:
                delivery = await self._hand_over(topic, value, key)
            except PublishError as exc:
                self._failed(topic, queued_at, exc)
                continue
            except Exception as exc:  # the record is lost, the sender goes on
                self._failed(topic, queued_at, exc)
                raise
            delivery.add_done_callback(
                functools.partial(self._delivered, topic=topic, queued_at=queued_at)
            )

    async def _hand_over(
        self, topic: str, value: bytes, key: bytes | None
    ) -> asyncio.Future[object]:
        """The producer's future for the record's acknowledgement; PublishError when the
        producer cannot take it (not connected; no metadata or buffer space within its
        request timeout, which bounds this wait: no timer of our own per record)."""
        producer = self._producer
        if producer is None:
            raise PublishError("kafka is not connected")
        try:
            delivery: asyncio.Future[object] = await producer.send(topic, value=value, key=key)
        except (KafkaError, OSError) as exc:
            raise PublishError(f"kafka did not take a record for {topic}: {exc!r}") from exc
        return delivery

    def _delivered(self, delivery: asyncio.Future[object], topic: str, queued_at: float) -> None:
        if delivery.cancelled():
            self._failed(topic, queued_at, PublishError("the producer stopped first"))
        elif (exc := delivery.exception()) is not None:
            self._failed(topic, queued_at, exc)
        else:
            self._on_publish(topic, time.perf_counter() - queued_at, True)
            self._settle()

    def _failed(self, topic: str, queued_at: float, exc: BaseException) -> None:
        self._on_publish(topic, time.perf_counter() - queued_at, False)
        if isinstance(exc, PublishError | KafkaError):
            log.warning("record not published", extra={"topic": topic, "error": str(exc)})
        else:  # not a Kafka failure: a bug, worth its traceback
            log.error("record not published", exc_info=exc, extra={"topic": topic})
        self._settle()

    def _settle(self) -> None:
        self._unsettled -= 1
        if not self._unsettled:
            self._settled.set()

    async def drain(self) -> None:
        """Wait for the records published with publish_later (acknowledged or failed)."""
        if self._sender is None:  # never started: nothing will send what is queued
            while self._queue:
                topic, _, _, queued_at = self._queue.popleft()
                self._failed(topic, queued_at, PublishError("the publisher is not started"))
        await self._settled.wait()

    async def stop(self) -> None:
        """Flush what is in flight, then close; idempotent."""
        self._closing = True
        connector, self._connector = self._connector, None
        if connector is not None:
            connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connector
        await self.drain()
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError, OSError):
                await producer.stop()


async def ensure_topics(bootstrap: str, topics: tuple[str, ...], *, partitions: int) -> None:
    """Create the topics that do not exist yet (consumers of a missing topic see nothing)."""
    if not topics:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()
