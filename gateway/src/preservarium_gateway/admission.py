"""Who gets in, and how often: rate limits per source and per device, and authentication.

The order keeps refusals cheap: a source over its contact rate, or over its budget of
failed authentications, is answered 4.29 before any lookup; then the contact's
credentials are checked against the directory's copy in memory (no query); then the
device's own rate. A failed authentication is counted (`auth_failures_total{reason}`),
logged at most once per interval per reason, and spends the source's failure budget.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import aiocoap
from aiocoap import error
from preservarium.errors import PreservariumError

from preservarium_gateway.authn import AuthFailure, DeviceAuthenticator, Presented, Verdict
from preservarium_gateway.config import GatewayLimits
from preservarium_gateway.log_throttle import LogThrottle
from preservarium_gateway.metrics import GatewayMetrics
from preservarium_gateway.rate_limits import KeyedRateLimiter, source_key

log = logging.getLogger("preservarium.gateway.auth")
# `device show` says when a device last authenticated: to the minute is enough, and it
# keeps the write off nearly every contact (one per device per minute, in the background).
MARK_INTERVAL_S = 60.0
MAX_MARKS = 100_000


class AuthenticationLog(Protocol):
    """Where successful authentications are noted (SQLCredentialRepository is the real one)."""

    async def mark_authenticated(self, device_id: str) -> None:
        """Note that the device authenticated now."""
        ...


class TooManyRequests(error.TooManyRequests):  # type: ignore[misc]
    """4.29 with Max-Age: when the sender may try again."""

    def __init__(self, max_age: int, scope: str) -> None:
        super().__init__(f"too many requests ({scope})")
        self.max_age = max_age
        self.scope = scope

    def to_message(self) -> aiocoap.Message:
        message = super().to_message()
        message.opt.max_age = self.max_age
        return message


class NotAuthenticated(error.Unauthorized):  # type: ignore[misc]
    """4.01: the contact did not authenticate as the device it names."""

    def __init__(self, reason: AuthFailure) -> None:
        super().__init__("not authenticated")
        self.reason = reason


class Admission:
    """The gates in front of a contact; one per gateway."""

    def __init__(
        self,
        *,
        authenticator: DeviceAuthenticator,
        limits: GatewayLimits,
        metrics: GatewayMetrics,
        throttle: LogThrottle,
        marks: AuthenticationLog | None = None,
    ) -> None:
        self.authenticator = authenticator
        self._marks = marks
        self._marked: dict[str, float] = {}
        self._marking: set[asyncio.Task[None]] = set()
        entries = limits.rate_limit_entries
        self._sources = KeyedRateLimiter(per_min=limits.source_rate_per_min, max_entries=entries)
        self._devices = KeyedRateLimiter(per_min=limits.device_rate_per_min, max_entries=entries)
        self._failures = KeyedRateLimiter(per_min=limits.auth_failures_per_min, max_entries=entries)
        self._metrics = metrics
        self._throttle = throttle

    def admit_source(self, remote: str) -> None:
        """Raise TooManyRequests when the sender's address is over its rates."""
        key = source_key(remote)
        wait = self._failures.retry_after(key)
        if wait is not None:
            self._limited("auth_failures", wait)
        wait = self._sources.take(key)
        if wait is not None:
            self._limited("source", wait)

    def admit_device(self, device_id: str) -> None:
        """Raise TooManyRequests when the device is over its contact rate."""
        wait = self._devices.take(device_id)
        if wait is not None:
            self._limited("device", wait)

    def authenticate(self, device_id: str, presented: Presented, remote: str) -> Verdict:
        """Check the contact; a failure is counted, logged (throttled) and charged."""
        verdict = self.authenticator.check(device_id, presented)
        if verdict.failure is not None:
            self.failed(verdict.failure, remote)
        elif verdict.authenticated is not None:
            self._mark(device_id)
        return verdict

    async def drain(self) -> None:
        """Wait for the notes of authentications still being written."""
        await asyncio.gather(*self._marking, return_exceptions=True)

    def _mark(self, device_id: str) -> None:
        now = time.monotonic()
        if self._marks is None or now - self._marked.get(device_id, -MARK_INTERVAL_S) < (
            MARK_INTERVAL_S
        ):
            return
        if len(self._marked) >= MAX_MARKS:
            self._marked.clear()
        self._marked[device_id] = now
        task = asyncio.get_running_loop().create_task(self._write_mark(self._marks, device_id))
        self._marking.add(task)
        task.add_done_callback(self._marking.discard)

    @staticmethod
    async def _write_mark(marks: AuthenticationLog, device_id: str) -> None:
        try:
            await marks.mark_authenticated(device_id)
        except PreservariumError as exc:
            log.warning("last authentication not stored", extra={"device_id": device_id,
                        "error": str(exc)})  # fmt: skip

    def failed(self, reason: AuthFailure, remote: str) -> None:
        """Count, log and charge one failed authentication from `remote`."""
        self._metrics.child(self._metrics.auth_failures, reason.value).inc()
        self._failures.take(source_key(remote))
        suppressed = self._throttle.admit(("auth_failure", reason))
        if suppressed is not None:
            log.warning("contact not authenticated", extra={"reason": reason.value,
                        "remote": remote, "suppressed": suppressed})  # fmt: skip

    def _limited(self, scope: str, wait: int) -> None:
        self._metrics.child(self._metrics.rate_limited, scope).inc()
        raise TooManyRequests(wait, scope)
