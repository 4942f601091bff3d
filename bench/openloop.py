"""An open-loop load generator: requests leave at a fixed rate, answered or not.

The closed-loop generator (`bench.loadgen`) sends the next request when one is answered,
so a slow server slows the load and its latency hides queueing. Here request k leaves at
`k / rate` seconds whatever happened to the earlier ones: latency includes the waiting a
device at that rate would see. `python -m bench.openloop < SPEC_JSON` takes the loadgen's
spec with `rate` (requests/s) in place of `window`, and prints the same report, with
`target_rate` and `sent`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from bench.loadgen import SOCKETS, LoadGenerator, _Socket

TICK_S = 0.001


class OpenLoopGenerator(LoadGenerator):
    """Sends at `rate` requests per second for `duration_s`, never waiting for answers."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__({**spec, "window": spec.get("window", 0)})
        self.rate = float(spec["rate"])

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        sockets = []
        for _ in range(SOCKETS):
            _, protocol = await loop.create_datagram_endpoint(
                lambda: _Socket(self), remote_addr=(self.host, self.port)
            )
            sockets.append(protocol)
        requests: set[asyncio.Task[None]] = set()
        started = time.perf_counter()
        sent = 0
        while (now := time.perf_counter()) < started + self.duration_s:
            due = int((now - started) * self.rate)
            while sent < due:  # catch up after a late tick: the schedule is the rate's
                sent += 1
                index = self.schedule[sent % len(self.schedule)]
                task = loop.create_task(self._one(sockets[sent % SOCKETS], index, sent))
                requests.add(task)
                task.add_done_callback(requests.discard)
            await asyncio.sleep(TICK_S)
        elapsed = time.perf_counter() - started
        await asyncio.gather(*requests)  # each ends answered or timed out
        for sock in sockets:
            assert sock.transport is not None
            sock.transport.close()
        report = self.report(elapsed)
        return {**report, "target_rate": self.rate, "sent": sent}


def main() -> None:
    """`python -m bench.openloop < SPEC_JSON`: run, print the report as JSON."""
    spec = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(OpenLoopGenerator(spec).run())))


if __name__ == "__main__":
    main()
