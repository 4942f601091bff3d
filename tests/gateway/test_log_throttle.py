"""LogThrottle: one record per kind per interval, telling how many it held back."""

from __future__ import annotations

import logging

from preservarium_gateway.log_throttle import LogThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, level: int = logging.WARNING, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("coap", level, __file__, 1, msg, ("x",), None)
    entry.__dict__.update(extra)
    return entry


def test_one_record_per_kind_per_interval_then_the_count_held_back() -> None:
    clock = Clock()
    throttle = LogThrottle(interval_s=10, clock=clock)
    assert throttle.admit("unparsable") == 0
    assert [throttle.admit("unparsable") for _ in range(500)] == [None] * 500
    assert throttle.admit("oversize") == 0  # another kind is not held back
    clock.now += 10
    assert throttle.admit("unparsable") == 500
    assert throttle.admit("unparsable") is None


def test_as_a_filter_it_keys_on_the_template_and_cause_and_spares_debug() -> None:
    clock = Clock()
    throttle = LogThrottle(interval_s=10, clock=clock)
    passed = [throttle.filter(record("from %s")) for _ in range(100)]
    assert passed.count(True) == 1
    assert throttle.filter(record("other %s")) is True
    assert throttle.filter(record("from %s", cause="a")) is True
    assert all(throttle.filter(record("from %s", logging.DEBUG)) for _ in range(10))
    clock.now += 11
    later = record("from %s")
    assert throttle.filter(later) is True and getattr(later, "suppressed", None) == 99
