"""The deduplication cache: bounded, fair between senders, expiring (unit level)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiocoap.numbers.types import CON, NON
from preservarium_gateway.dedup import BoundedDeduplication

from tests.support.clock import SteppedClock


@dataclass(frozen=True)
class Remote:
    sockaddr: tuple[Any, ...]


@dataclass
class Message:
    remote: Remote
    mid: int
    mtype: Any = CON


@dataclass
class Manager:
    """Records what the cache sends again."""

    sent: list[Any] = field(default_factory=list)

    def _send_initially(self, message: Any) -> None:
        self.sent.append(message)


def v4(host: str, port: int = 5683) -> Remote:
    return Remote(("::ffff:" + host, port, 0, 0))


def cache(**bounds: Any) -> tuple[BoundedDeduplication, Manager]:
    manager = Manager()
    options = {"lifetime_s": 247.0, "max_entries": 100, "source_entries": 10} | bounds
    return BoundedDeduplication(manager, **options), manager


def seen(dedup: BoundedDeduplication, remote: Remote, mid: int, mtype: Any = CON) -> bool:
    return dedup.deduplicate(Message(remote, mid, mtype))


def test_a_retransmission_gets_the_stored_response() -> None:
    dedup, manager = cache()
    victim = v4("10.0.0.1")
    assert seen(dedup, victim, 7) is False
    dedup.store_response(Message(victim, 7, "response"))
    assert seen(dedup, victim, 7) is True
    assert seen(dedup, victim, 7, NON) is True  # a NON duplicate is dropped, not answered
    assert [message.mtype for message in manager.sent] == ["response"]


def test_one_source_over_its_quota_evicts_only_its_own_oldest() -> None:
    dedup, _ = cache(max_entries=100, source_entries=10)
    victim = v4("10.0.0.1")
    seen(dedup, victim, 1)
    flooder = v4("10.0.0.2", 40000)
    for mid in range(5000):
        assert seen(dedup, flooder, mid) is False
    assert dedup.held_by(flooder) == 10 and len(dedup) == 11
    assert seen(dedup, victim, 1) is True
    assert seen(dedup, flooder, 4999) is True and seen(dedup, flooder, 0) is False


def test_a_flooding_socket_evicts_itself_not_a_device_on_the_same_host() -> None:
    dedup, _ = cache(max_entries=100, source_entries=10)
    device = v4("10.0.0.1", 5683)
    seen(dedup, device, 1)
    flooder = v4("10.0.0.1", 40000)
    for mid in range(5000):
        seen(dedup, flooder, mid)
    assert dedup.held_by(device) == 10
    assert seen(dedup, device, 1) is True


def test_over_the_global_bound_the_largest_source_loses_its_oldest() -> None:
    dedup, _ = cache(max_entries=30, source_entries=10)
    victims = [v4(f"10.0.1.{n}") for n in range(5)]
    for victim in victims:
        seen(dedup, victim, 1)
    flooders = [v4(f"10.0.2.{n}") for n in range(20)]  # many sources, each within quota
    for mid in range(10):
        for flooder in flooders:
            seen(dedup, flooder, mid)
    assert len(dedup) == 30
    assert all(seen(dedup, victim, 1) for victim in victims)
    assert max(dedup.held_by(flooder) for flooder in flooders) <= 2


def test_entries_expire_after_the_lifetime() -> None:
    clock = SteppedClock()
    dedup, _ = cache(lifetime_s=247.0, clock=clock)
    remote = v4("10.0.0.1")
    seen(dedup, remote, 1)
    assert seen(dedup, remote, 1) is True
    clock.advance(246.0)
    assert seen(dedup, remote, 1) is True  # still within its lifetime
    clock.advance(1.0)
    assert seen(dedup, remote, 2) is False  # expires the first on the way
    assert len(dedup) == 1 and seen(dedup, remote, 1) is False
