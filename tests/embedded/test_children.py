"""Child processes: their output line by line, and a stop that leaves nothing behind."""

from __future__ import annotations

import asyncio
import sys
import time

from preservarium.children import ChildProcess
from preservarium_tools.embedded.errors import ChildExitedError
from preservarium_tools.embedded.readiness import wait_ready

from tests.embedded.support import alive

# A program that ignores SIGTERM and leaves a grandchild that ignores it too.
STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
print(grandchild.pid, flush=True)
print('{"level": "info", "msg": "ready"}', file=sys.stderr, flush=True)
time.sleep(60)
"""


class Lines(list[tuple[str, str]]):
    """What a child printed, with a way to wait for it."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def sink(self, name: str, line: str) -> None:
        self.append((name, line))
        self.changed.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self) < count:
                self.changed.clear()
                await self.changed.wait()


def child(code: str, lines: Lines, grace_s: float = 0.3) -> ChildProcess:
    return ChildProcess(
        name="stub", argv=[sys.executable, "-c", code], env={}, sink=lines.sink, grace_s=grace_s
    )


class TestChildProcess:
    async def test_output_is_read_line_by_line(self) -> None:
        lines = Lines()
        process = child("print('one'); print('two')", lines)
        await process.start()
        assert await process.wait() == 0
        assert lines == [("stub", "one"), ("stub", "two")]
        assert process.last_lines == ["one", "two"]
        await process.stop()

    async def test_stop_kills_what_ignores_sigterm_and_its_children(self) -> None:
        lines = Lines()
        process = child(STUBBORN, lines)
        await process.start()
        await lines.wait_for(2)
        grandchild = int(next(line for _, line in lines if line.isdigit()))
        assert process.pid is not None

        began = time.monotonic()
        await process.stop()

        assert time.monotonic() - began < 5
        await asyncio.sleep(0.2)  # the grandchild is reaped by whoever adopted it
        assert alive({process.pid, grandchild}) == set()
        await process.stop()  # idempotent

    async def test_a_child_that_exits_while_starting_is_reported(self) -> None:
        lines = Lines()
        process = child("import sys; print('cannot listen'); sys.exit(2)", lines)
        await process.start()
        exited = asyncio.create_task(process.wait())

        async def never() -> bool:
            return False

        try:
            await wait_ready(process, exited, never, timeout_s=10)
        except ChildExitedError as exc:
            assert (exc.name, exc.returncode, exc.last_lines) == ("stub", 2, ("cannot listen",))
            assert str(exc) == "stub exited with status 2"
        else:
            raise AssertionError("wait_ready returned")
        finally:
            await process.stop()
