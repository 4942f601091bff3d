"""The Kafka publisher: acks=all, bounded waits, and a connection that comes back by itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
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
        self._background: set[asyncio.Task[None]] = set()
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

        async def send() -> None:
            try:
                await self.publish(topic, value, key)
            except PublishError as exc:
                log.warning("record not published", extra={"topic": topic, "error": str(exc)})
            except Exception:  # nobody awaits this task: the failure must be seen here
                self._on_publish(topic, 0.0, False)
                log.exception("record not published", extra={"topic": topic})

        task = asyncio.create_task(send())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for the records published with publish_later."""
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def stop(self) -> None:
        """Flush what is in flight, then close; idempotent."""
        self._closing = True
        connector, self._connector = self._connector, None
        if connector is not None:
            connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connector
        await self.drain()
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
