"""The bundled broker as one of the stack's children (see `preservarium.children`)."""

from __future__ import annotations

import asyncio
import os
from typing import BinaryIO

from preservarium.children import DRAIN_TIMEOUT_S, LINE_LIMIT, LineSink, LogPump, finish

from preservarium_tools.embedded.broker import EmbeddedBroker


class BrokerChild:
    """The bundled broker (EmbeddedBroker), with its output pumped through a pipe.

    The broker does not fork, so the end of its output is the end of the broker.
    """

    def __init__(self, *, host: str, port: int, sink: LineSink, name: str = "kafka") -> None:
        self._name = name
        self._host = host
        self._port = port
        self._log = LogPump(name, sink)
        self._broker: EmbeddedBroker | None = None
        self._pump: asyncio.Task[None] | None = None
        self._transport: asyncio.ReadTransport | None = None

    @property
    def name(self) -> str:
        """The name its log lines are prefixed with."""
        return self._name

    @property
    def pid(self) -> int | None:
        """Its process id once started."""
        return None if self._broker is None else self._broker.pid

    @property
    def last_lines(self) -> list[str]:
        """The last lines it printed, oldest first."""
        return self._log.last_lines

    @property
    def bootstrap(self) -> str:
        """The address Kafka clients use."""
        return f"{self._host}:{self._port}"

    async def start(self) -> None:
        """Start the broker and wait until it accepts connections (BrokerError if not)."""
        read_fd, write_fd = os.pipe()
        output = os.fdopen(read_fd, "rb", buffering=0)
        try:
            await self._follow(output)
            self._broker = EmbeddedBroker(host=self._host, port=self._port, log=write_fd)
            await self._broker.start()
        except BaseException:
            if self._transport is None:
                output.close()
            raise
        finally:
            os.close(write_fd)  # the broker holds its own copy; EOF comes when it exits

    async def _follow(self, output: BinaryIO) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=LINE_LIMIT)
        self._transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), output
        )
        self._pump = asyncio.create_task(self._log.pump(reader), name=f"{self._name}-log")

    async def wait(self) -> int | None:
        """Return once the broker has exited (its status is not known here)."""
        if self._pump is not None:
            await asyncio.wait([self._pump])
        return None

    async def stop(self) -> None:
        """Stop the broker; idempotent."""
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.stop()
        if self._pump is not None:
            await finish([self._pump], DRAIN_TIMEOUT_S)
        if self._transport is not None:
            self._transport.close()
