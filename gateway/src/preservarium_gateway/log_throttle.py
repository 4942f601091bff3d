"""At most one log line per cause per interval, for what a sender on the network can repeat.

A device (or anyone with a UDP socket) chooses how often the gateway sees a malformed
datagram; without a bound, eight bytes in would write a line (or a traceback) out, and
the log would be the attacker's. `LogThrottle` lets the first record of a kind through,
holds back the rest for `interval_s`, and tells on the next record it lets through how
many it held back (`suppressed`). Counters, not logs, carry the exact numbers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable

DEFAULT_INTERVAL_S = 10.0
MAX_KINDS = 1024


class LogThrottle(logging.Filter):
    """A logging filter (and a direct gate) that rate-limits records by kind."""

    def __init__(
        self,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._clock = clock
        # kind -> [time the next record may pass, records held back since the last]
        self._kinds: dict[Hashable, list[float]] = {}

    def admit(self, kind: Hashable) -> int | None:
        """None to hold a record of `kind` back; else how many were held back before it."""
        now = self._clock()
        state = self._kinds.get(kind)
        if state is not None and now < state[0]:
            state[1] += 1
            return None
        if state is None and len(self._kinds) >= MAX_KINDS:
            self._kinds.clear()  # kinds are a code's fixed set; this is only a safety bound
        self._kinds[kind] = [now + self._interval_s, 0]
        return 0 if state is None else int(state[1])

    def filter(self, record: logging.LogRecord) -> bool:
        """Rate-limit by logger, message template and `cause`; DEBUG passes (opt-in)."""
        if record.levelno <= logging.DEBUG:
            return True
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        suppressed = self.admit((record.name, template, getattr(record, "cause", None)))
        if suppressed is None:
            return False
        if suppressed:
            record.suppressed = suppressed
        return True
