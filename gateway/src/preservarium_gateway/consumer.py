"""The `command.request` consumer: validate, store durably, then commit the offset.

A malformed record is rejected (with a status record saying why) and never stops the
loop; a database failure stops the batch before its offsets are committed, so nothing
is lost: the records come again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from preservarium.db.models import utcnow
from preservarium.errors import RepositoryError
from preservarium.lifecycle import AsyncLifecycle

from preservarium_gateway.command_requests import Rejection, read_command_request
from preservarium_gateway.commands import CommandDesk
from preservarium_gateway.config import GatewayLimits

log = logging.getLogger("preservarium.gateway.consumer")
STOP_TIMEOUT_S = 10.0


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
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._group = group
        self._desk = desk
        self._limits = limits
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Consume in the background (connecting, and reconnecting, as the broker allows)."""
        self._task = asyncio.create_task(self._run(), name="command-consumer")

    async def stop(self) -> None:
        """Stop consuming; idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            self._topic,
            bootstrap_servers=self._bootstrap,
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            retry_backoff_ms=200,
            metadata_max_age_ms=5000,
        )

    async def _run(self) -> None:
        delay = 0.2
        while True:
            consumer = self._consumer()
            try:
                await consumer.start()
                delay = 0.2
                await self._consume(consumer)
            except (KafkaError, OSError, RepositoryError) as exc:
                log.warning("command consumer restarting", extra={"error": repr(exc)})
            finally:
                # Leaving the group politely waits for a join in progress (seconds); bound it
                # so a broker that stopped answering cannot hold the gateway's shutdown.
                with contextlib.suppress(KafkaError, OSError, TimeoutError):
                    await asyncio.wait_for(consumer.stop(), STOP_TIMEOUT_S)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=200)
            for records in batches.values():
                for record in records:
                    await self._handle(record.value)
            if batches:
                await consumer.commit()

    async def _handle(self, value: bytes | None) -> None:
        request = read_command_request(
            value,
            now=utcnow(),
            default_ttl_s=self._limits.default_command_ttl_s,
            max_ttl_s=self._limits.max_command_ttl_s,
        )
        if isinstance(request, Rejection):
            log.info("command request rejected", extra={"reason": request.reason,
                     "request_id": request.request_id})  # fmt: skip
            self._desk.reject(request)
            return
        await self._desk.store(request)
