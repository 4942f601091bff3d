"""CPU time of processes, read from /proc: what one contact costs each process.

A process's `utime + stime` (fields 14 and 15 of /proc/PID/stat) covers all its threads;
`cutime + cstime` (16, 17) cover its children once they are reaped. A process tree's CPU
over a window is the sum over the processes alive at either end, the same pid counted
as the difference of its two readings (one that appeared in the window from zero), plus
what the root's reaped children used in between.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class Stat:
    """What /proc/PID/stat says about CPU and parenthood, in seconds."""

    pid: int
    ppid: int
    own_s: float  # utime + stime: every thread of the process
    reaped_s: float  # cutime + cstime: its children that have ended and been waited for


def parse_stat(text: str, *, ticks: int = TICKS) -> Stat:
    """One /proc/PID/stat line (the command name, in parentheses, may hold anything)."""
    head, _, rest = text.rpartition(")")
    pid = int(head.split(" (", 1)[0])
    fields = rest.split()
    # fields[0] is field 3 (state): utime is field 14, so fields[11].
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return Stat(pid=pid, ppid=int(fields[1]), own_s=(utime + stime) / ticks,
                reaped_s=(cutime + cstime) / ticks)  # fmt: skip


def read_stats(proc: Path = PROC) -> dict[int, Stat]:
    """Every process's Stat now, by pid (those that end while read are left out)."""
    stats: dict[int, Stat] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = parse_stat((entry / "stat").read_text())
            except (OSError, ValueError, IndexError):
                continue
    return stats


def tree(stats: Mapping[int, Stat], root: int) -> set[int]:
    """`root` and every process under it."""
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found = {root} if root in stats else set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The CPU seconds of named groups of processes at one moment."""

    seconds: dict[str, dict[int, float]]

    @classmethod
    def take(cls, groups: Mapping[str, Iterable[int]], stats: Mapping[int, Stat]) -> Snapshot:
        """Each group's processes' own CPU, plus their reaped children's (by pid)."""
        seconds = {
            name: {pid: stats[pid].own_s + stats[pid].reaped_s for pid in pids if pid in stats}
            for name, pids in groups.items()
        }
        return cls(seconds)

    def since(self, before: Snapshot) -> dict[str, float]:
        """CPU seconds each group used between `before` and this snapshot."""
        used: dict[str, float] = {}
        for name, now in self.seconds.items():
            then = before.seconds.get(name, {})
            used[name] = sum(max(0.0, value - then.get(pid, 0.0)) for pid, value in now.items())
        return used


@dataclass(frozen=True, slots=True)
class Group:
    """Processes measured together: `pid` alone (`self`), with everything under it
    (`tree`), or only what is under it (`children`: a sandbox's workers)."""

    name: str
    pid: int
    scope: str = "tree"

    def pids(self, stats: Mapping[int, Stat]) -> set[int]:
        """Its pids now."""
        if self.scope == "self":
            return {self.pid} if self.pid in stats else set()
        under = tree(stats, self.pid)
        return under - {self.pid} if self.scope == "children" else under


class CpuMeter:
    """Measures the CPU seconds each group of processes uses over a window."""

    def __init__(self, groups: Iterable[Group], *, proc: Path = PROC) -> None:
        self._groups = list(groups)
        self._proc = proc
        self._before: Snapshot | None = None

    def _snapshot(self) -> Snapshot:
        stats = read_stats(self._proc)
        pids = {group.name: group.pids(stats) for group in self._groups}
        return Snapshot.take(pids, stats)

    def start(self) -> None:
        """Begin the window."""
        self._before = self._snapshot()

    def stop(self) -> dict[str, float]:
        """End the window: CPU seconds used by each group in it."""
        assert self._before is not None, "start() first"
        return self._snapshot().since(self._before)


def per_contact_ms(used: Mapping[str, float], contacts: int) -> dict[str, float]:
    """CPU milliseconds per contact, by group."""
    return {name: 1000 * seconds / contacts if contacts else float("nan")
            for name, seconds in used.items()}  # fmt: skip
