"""docs/operations.md against the services: the metrics tables list exactly the metrics
each service registers, with their types and labels, and the supervised tasks are the
ones the code starts."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

import pytest
from preservarium.runtime import RuntimeMetrics
from preservarium.supervisor import SupervisorMetrics
from preservarium_gateway.metrics import GatewayMetrics
from preservarium_gateway.process_metrics import ChildMetricsCollector, ProcessMetrics
from preservarium_sandbox.metrics import SandboxMetrics
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tests.repo.markdown import ROOT, section

OPERATIONS = ROOT / "docs" / "operations.md"
SOURCES = [ROOT / name / "src" for name in ("sdk", "gateway", "sandbox", "tools")]
ROW = re.compile(r"^\| `(preservarium_\w+)` \| (\w+) \|\s*([^|]*?)\s*\|", re.MULTILINE)
KINDS = {Counter: "counter", Gauge: "gauge", Histogram: "histogram"}
Metric = tuple[str, str, frozenset[str]]  # name as scraped, type, labels


def _metrics_of(owner: object) -> Iterator[Counter | Gauge | Histogram]:
    for value in vars(owner).values():
        if isinstance(value, Counter | Gauge | Histogram):
            yield value
        elif isinstance(value, SupervisorMetrics):  # registered in the service's registry
            yield from _metrics_of(value)


def registered(metrics: object) -> set[Metric]:
    """The metrics an object of a service's metrics class registers."""
    found = set()
    for metric in _metrics_of(metrics):
        kind = KINDS[type(metric)]
        scraped = metric._name + ("_total" if kind == "counter" else "")
        found.add((scraped, kind, frozenset(metric._labelnames)))
    return found


def parent_metrics() -> set[Metric]:
    """What the parent of several gateway processes adds to their metrics: its own, and
    the families its collector makes at each scrape (their own come from the children)."""
    collected = {
        (family.name, family.type, frozenset(getattr(family, "_labelnames", ())))
        for family in ChildMetricsCollector([]).collect()
    }
    return registered(ProcessMetrics(CollectorRegistry())) | collected


def documented() -> set[Metric]:
    """Every row of the metrics tables of the monitoring section."""
    text = section(OPERATIONS, "Monitoring and alerting")
    rows = set()
    for name, kind, labels in ROW.findall(text):
        names = frozenset(re.findall(r"`(\w+)`", labels))
        rows.add((name, kind, names))
    return rows


def test_the_tables_are_read() -> None:
    assert len(documented()) >= 15


@pytest.mark.parametrize("metrics", [GatewayMetrics(), SandboxMetrics()], ids=type)
def test_every_registered_metric_is_documented(metrics: object) -> None:
    missing = registered(metrics) - documented()
    assert not missing, f"not documented (or with other types or labels): {sorted(missing)}"


def test_the_runtime_metrics_of_both_services_are_documented() -> None:
    missing = registered(RuntimeMetrics(CollectorRegistry())) - documented()
    assert not missing, f"not documented (or with other types or labels): {sorted(missing)}"


def test_the_process_parents_metrics_are_documented() -> None:
    missing = parent_metrics() - documented()
    assert not missing, f"not documented (or with other types or labels): {sorted(missing)}"


def test_every_documented_metric_is_registered() -> None:
    known = (
        registered(GatewayMetrics()) | registered(SandboxMetrics()) | parent_metrics()
        | registered(RuntimeMetrics(CollectorRegistry()))
    )  # fmt: skip
    unknown = documented() - known
    assert not unknown, f"docs/operations.md lists metrics no service registers: {unknown}"


def supervised_task_names() -> set[str]:
    """The names of the loops started under a Supervisor: `spawn("name", ...)` and
    `Periodic(..., name="name", ...)` in the packages' source."""
    names = set()
    for folder in SOURCES:
        for path in folder.rglob("*.py"):
            if "/v1/" in path.as_posix() or path.name == "supervisor.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                first = node.args[0] if node.args else None
                if called == "spawn" and isinstance(first, ast.Constant):
                    names.add(str(first.value))
                if called == "Periodic":
                    names |= {
                        str(k.value.value)
                        for k in node.keywords
                        if k.arg == "name" and isinstance(k.value, ast.Constant)
                    }
    return names


def test_the_task_restarts_row_names_every_supervised_task() -> None:
    text = section(OPERATIONS, "Monitoring and alerting")
    (row,) = [line for line in text.splitlines() if "`preservarium_task_restarts_total`" in line]
    listed = set(re.findall(r"`([a-z]+(?:-[a-z]+)+)`", row))
    assert listed == supervised_task_names()
