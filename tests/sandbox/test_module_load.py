"""A parser's module body runs under its version's compile budget, not its first call's.

Before, the first call on each new worker executed the module inside the call's own
limit. A module slower to load than one call may run (the Efento parser's tables on a
loaded machine) timed that call out, the timeout cost the worker, and the next call met
a new worker and did the same: every call failed until the load went away.
"""

from __future__ import annotations

from typing import Any

from preservarium_sandbox.limits import Limits
from preservarium_sandbox.pool import Job, WorkerPool
from preservarium_sandbox.worker.protocol import Answer
from preservarium_sandbox.worker_process import JobTimedOut

LIMITS = Limits(timeout_ms=100, compile_timeout_ms=10_000)
# Tens of millions of steps at module level: far over 100 ms, far under 10 s.
SLOW_MODULE = """
TOTAL = 0
for i in range(2_000_000):
    TOTAL += i
def parse(payload, metadata):
    return {"n": len(payload), "total": TOTAL}
"""
LOOPING_MODULE = "while True:\n    pass\ndef parse(payload, metadata):\n    return {}\n"
CONTACT: dict[str, Any] = {"device_id": None, "device_type": "t", "path": "", "method": "POST",
           "confirmable": True, "received_at": 0, "query": {}}  # fmt: skip


async def test_a_module_slower_to_load_than_a_call_serves_every_call() -> None:
    async with WorkerPool(size=1, limits=LIMITS, spares=1) as pool:
        for _ in range(4):
            answer = await pool.run(Job(sha="5" * 64, source=SLOW_MODULE, contact=CONTACT))
            assert isinstance(answer, Answer), answer
            assert answer.ok and b"1999999000000" in (answer.document or b""), answer


async def test_a_module_that_never_loads_is_a_timeout_at_the_compile_budget() -> None:
    limits = Limits(timeout_ms=100, compile_timeout_ms=1000)
    async with WorkerPool(size=1, limits=limits, spares=1) as pool:
        answer = await pool.run(Job(sha="6" * 64, source=LOOPING_MODULE, contact=CONTACT))
        # Cut short by the worker's own clock (answered) or by the parent (killed).
        if isinstance(answer, Answer):
            assert isinstance(answer.error, dict) and answer.error["kind"] == "timeout", answer
        else:
            assert isinstance(answer, JobTimedOut), answer
