"""The benchmark's /proc CPU reader: parsing, process trees, and windows over them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.cpu import CpuMeter, Group, Snapshot, parse_stat, per_contact_ms, read_stats, tree


def stat_line(pid: int, ppid: int, utime: int, stime: int, cutime: int = 0, cstime: int = 0,
              comm: str = "python") -> str:  # fmt: skip
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime...
    return (f"{pid} ({comm}) S {ppid} 1 1 0 -1 4194560 10 0 0 0 "
            f"{utime} {stime} {cutime} {cstime} 20 0 3 0 100 1000 50\n")  # fmt: skip


def fake_proc(root: Path, lines: dict[int, str]) -> Path:
    for pid, line in lines.items():
        (root / str(pid)).mkdir(exist_ok=True)
        (root / str(pid) / "stat").write_text(line)
    (root / "self").mkdir(exist_ok=True)  # not a pid: skipped
    return root


class TestParse:
    def test_fields_in_seconds(self) -> None:
        stat = parse_stat(stat_line(42, 7, 150, 50, 30, 20), ticks=100)
        assert (stat.pid, stat.ppid, stat.own_s, stat.reaped_s) == (42, 7, 2.0, 0.5)

    def test_a_command_name_with_spaces_and_parentheses(self) -> None:
        stat = parse_stat(stat_line(9, 1, 100, 0, comm="a) b (c"), ticks=100)
        assert (stat.pid, stat.ppid, stat.own_s) == (9, 1, 1.0)

    def test_this_process_reads(self) -> None:
        stats = read_stats()
        me = stats[os.getpid()]
        assert me.ppid == os.getppid()
        assert me.own_s >= 0


class TestTrees:
    STATS = {s.pid: s for s in (parse_stat(stat_line(p, pp, 0, 0))
             for p, pp in ((10, 1), (11, 10), (12, 10), (13, 11), (20, 1)))}  # fmt: skip

    def test_tree_is_the_root_and_everything_under_it(self) -> None:
        assert tree(self.STATS, 10) == {10, 11, 12, 13}
        assert tree(self.STATS, 99) == set()

    @pytest.mark.parametrize(
        ("scope", "pids"), [("tree", {10, 11, 12, 13}), ("self", {10}), ("children", {11, 12, 13})]
    )
    def test_group_scopes(self, scope: str, pids: set[int]) -> None:
        assert Group("g", 10, scope).pids(self.STATS) == pids


class TestWindows:
    def test_a_window_counts_what_each_group_used_in_it(self, tmp_path: Path) -> None:
        proc = fake_proc(tmp_path, {10: stat_line(10, 1, 100, 100), 11: stat_line(11, 10, 50, 0),
                                    20: stat_line(20, 1, 0, 0)})  # fmt: skip
        meter = CpuMeter([Group("sandbox", 10, "self"), Group("workers", 10, "children"),
                          Group("broker", 20)], proc=proc)  # fmt: skip
        meter.start()
        # In the window: the sandbox used 1 s, worker 11 ended (reaped: its 0.5 s and its
        # 1 s more show in the sandbox's cutime), a new worker 12 used 0.25 s.
        (proc / "11" / "stat").unlink()
        (proc / "11").rmdir()
        fake_proc(proc, {10: stat_line(10, 1, 150, 150, 100, 50), 12: stat_line(12, 10, 25, 0),
                         20: stat_line(20, 1, 10, 0)})  # fmt: skip
        used = meter.stop()
        ticks = os.sysconf("SC_CLK_TCK")
        assert used == pytest.approx({"sandbox": (100 + 150) / ticks, "workers": 25 / ticks,
                                      "broker": 10 / ticks})  # fmt: skip

    def test_a_pid_that_appears_counts_from_zero(self) -> None:
        before = Snapshot({"g": {1: 2.0}})
        after = Snapshot({"g": {1: 3.0, 2: 0.5}})
        assert after.since(before) == {"g": 1.5}

    def test_per_contact(self) -> None:
        assert per_contact_ms({"gateway": 2.0}, 1000) == {"gateway": 2.0}
        assert (
            per_contact_ms({"gateway": 2.0}, 0)["gateway"]
            != per_contact_ms({"gateway": 2.0}, 0)["gateway"]
        )  # NaN: nothing to divide by
