"""The cost of a parser call's module namespace: copied from a template, or executed.

Runs the worker's own job handler (preservarium_sandbox.worker.main.Worker.handle, with
its deadline clock, without the process hardening) on the Efento parser and the first
measurements example of examples/parsers/efento.examples.yaml, CALLS times after one
warm-up call, with the module copied (`copied`) or executed for every call (`executed`).

    python -m bench.globals_cost copied 200        # wall time per call
    valgrind --tool=callgrind python -m bench.globals_cost copied 200 --quiet

Under callgrind, instructions per call are the difference between two runs that differ
only in CALLS, divided by that difference (start-up and the first call cancel out).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from preservarium.contract.contact import Contact
from preservarium.sandbox_client import contact_proto
from preservarium_sandbox.engine.compiler import CompiledParser, compile_parser
from preservarium_sandbox.engine.template import ModuleImage
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.wire import contact_job
from preservarium_sandbox.worker.main import Worker

SOURCE = Path(__file__).parents[1] / "examples" / "parsers" / "efento.py"
PAYLOAD = bytes.fromhex("0a06282c020000011001183c221308011094affefd0520c8012a061e289affff074001")
# The job's contact exactly as the sandbox makes it from a route contact's request.
ROUTE_CONTACT = Contact(
    PAYLOAD, "efento", path="m", received_at=datetime.fromtimestamp(1_700_000_000, UTC)
)
CONTACT: dict[str, Any] = contact_job(contact_proto(ROUTE_CONTACT), Limits())
SHA = "e" * 64


def _worker(mode: str) -> Worker:
    worker = Worker(Limits(timeout_ms=5000))
    parser: CompiledParser = compile_parser(SOURCE.read_text())
    image = ModuleImage(copies=mode == "copied")
    worker.compiled[SHA] = dataclasses.replace(parser, image=image)
    return worker


def run(mode: str, calls: int) -> float:
    """Seconds per call of `calls` calls after one warm-up; raises if a call fails."""
    worker = _worker(mode)
    job: dict[str, Any] = {"sha": SHA, "contact": CONTACT, "identify": True, "blob": PAYLOAD}
    worker.handle(job)
    started = time.perf_counter()
    for _ in range(calls):
        handled = worker.handle(job)
        if not handled.result.ok:
            raise RuntimeError(f"the call failed: {handled.result}")
    return (time.perf_counter() - started) / max(calls, 1)


def main() -> None:
    """`python -m bench.globals_cost MODE CALLS [--quiet]`."""
    mode, calls = sys.argv[1], int(sys.argv[2])
    if mode not in ("copied", "executed"):
        raise SystemExit("MODE is copied or executed")
    per_call = run(mode, calls)
    if "--quiet" not in sys.argv:
        print(f"{mode}: {per_call * 1e6:.1f} us per call over {calls} calls")


if __name__ == "__main__":
    main()
