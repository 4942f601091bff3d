"""The CPUs a process may use: its affinity, capped by a cgroup v2 CPU quota."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from preservarium.cpus import available_cpus, quota_cpus


@pytest.mark.parametrize(
    ("line", "cpus"),
    [("max 100000", None), ("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1),
     ("", None), ("0 100000", None), ("x 100000", None), ("100000", None)],
)  # fmt: skip
def test_quota_lines(line: str, cpus: int | None) -> None:
    assert quota_cpus(line) == cpus


def test_a_quota_caps_the_affinity(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    affinity = len(os.sched_getaffinity(0))
    cpu_max.write_text("max 100000\n")
    assert available_cpus(cpu_max) == affinity
    cpu_max.write_text(f"{100000 * (affinity + 8)} 100000\n")
    assert available_cpus(cpu_max) == affinity  # a quota above the affinity changes nothing
    cpu_max.write_text("100000 100000\n")
    assert available_cpus(cpu_max) == 1
    assert available_cpus(tmp_path / "missing") == affinity
