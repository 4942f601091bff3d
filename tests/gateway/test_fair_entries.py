"""FairEntries: the bounds and who pays for them (unit level)."""

from __future__ import annotations

from preservarium_gateway.fair_entries import FairEntries, Sizes, host_of


def endpoint(host: str, port: int = 5683) -> tuple[str, int, int]:
    return ("::ffff:" + host, port, 0)


def test_an_ipv6_sender_is_one_host_per_64() -> None:
    first = ("2001:db8:1:2::1", 5683, 0)
    assert host_of(first) == host_of(("2001:db8:1:2:ffff::9", 1, 0))
    assert host_of(first) != host_of(("2001:db8:1:3::1", 5683, 0))
    assert host_of(endpoint("10.0.0.1")) != host_of(endpoint("10.0.0.2"))
    assert host_of(endpoint("10.0.0.1", 1)) == host_of(endpoint("10.0.0.1", 2))
    assert host_of(("fe80::1%lo", 1, 0)) == host_of(("fe80::2", 1, 0))


def test_a_host_over_its_quota_loses_its_busiest_endpoints_oldest() -> None:
    entries = FairEntries(max_entries=100, host_entries=5)
    quiet, busy = endpoint("10.0.0.1", 1), endpoint("10.0.0.1", 2)
    entries.add((quiet, 1), "q1")
    entries.add((quiet, 2), "q2")
    for n in range(10):
        entries.add((busy, n), n)
    assert entries.held_by(host_of(quiet)) == 5 and len(entries) == 5
    assert entries.get((quiet, 1)) == "q1" and entries.get((quiet, 2)) == "q2"
    assert [entries.get((busy, n)) for n in (6, 7, 8, 9)] == [None, 7, 8, 9]


def test_over_the_bound_in_all_the_largest_host_pays() -> None:
    entries = FairEntries(max_entries=10, host_entries=8)
    small, large = endpoint("10.0.0.1"), endpoint("10.0.0.2")
    entries.add((small, 0), "s")
    for n in range(20):
        entries.add((large, n), n)
    assert len(entries) == 9 and entries.get((small, 0)) == "s"
    for n in range(3):
        entries.add((endpoint("10.0.0.3"), n), n)
    assert len(entries) == 10 and entries.get((small, 0)) == "s"
    assert entries.held_by(host_of(large)) == 6


def test_oldest_first_and_removal() -> None:
    entries = FairEntries(max_entries=10, host_entries=10)
    for n in range(3):
        entries.add((endpoint(f"10.0.0.{n}"), n), n)
    assert entries.oldest() == ((endpoint("10.0.0.0"), 0), 0)
    entries.remove((endpoint("10.0.0.0"), 0))
    assert entries.oldest() == ((endpoint("10.0.0.1"), 1), 1)
    assert entries.held_by(host_of(endpoint("10.0.0.0"))) == 0
    for n in (1, 2):
        entries.remove((endpoint(f"10.0.0.{n}"), n))
    assert entries.oldest() is None and len(entries) == 0


def test_sizes_track_the_largest() -> None:
    sizes = Sizes()
    for after in (1, 2, 3):
        sizes.moved("a", after - 1, after)
    sizes.moved("b", 0, 1)
    assert sizes.largest == 3 and sizes.a_largest() == "a"
    sizes.moved("a", 3, 2)
    sizes.moved("a", 2, 1)
    assert sizes.largest == 1 and sizes.a_largest() in {"a", "b"}
    sizes.moved("a", 1, 0)
    sizes.moved("b", 1, 0)
    assert sizes.largest == 0
