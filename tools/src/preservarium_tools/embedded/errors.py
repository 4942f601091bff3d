"""What can stop the embedded stack, each with the exit status `preservarium up` gives it."""

from __future__ import annotations

import signal
from collections.abc import Sequence

from preservarium.errors import PreservariumError


class StackError(PreservariumError):
    """The embedded stack could not start or stopped by itself."""

    exit_code = 1


class StackSetupError(StackError):
    """Something outside the stack is in the way: a port, a missing program, Kafka away."""

    exit_code = 2


class PortInUseError(StackSetupError):
    """A port the stack needs is taken."""

    def __init__(self, port: int, protocol: str) -> None:
        super().__init__(f"port {port}/{protocol} is in use: is another preservarium up running?")
        self.port = port
        self.protocol = protocol


class ChildExitedError(StackError):
    """A service of the stack exited when it should have kept running."""

    def __init__(self, name: str, returncode: int | None, last_lines: Sequence[str]) -> None:
        super().__init__(f"{name} {_how(returncode)}")
        self.name = name
        self.returncode = returncode
        self.last_lines = tuple(last_lines)


class NotReadyError(StackError):
    """A service kept running but never became ready."""

    def __init__(self, name: str, timeout_s: float, last_lines: Sequence[str]) -> None:
        super().__init__(f"{name} was not ready after {timeout_s:g} s")
        self.name = name
        self.last_lines = tuple(last_lines)


def _how(returncode: int | None) -> str:
    if returncode is None:
        return "exited"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"
