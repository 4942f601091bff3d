"""One file lists every sandbox limit: limits.py's table names each fixed limit it
defines, and no other module of the sandbox binds a number of its own at module level
(protocol and tuning constants excepted, each named below with why it is no limit)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import preservarium_sandbox
from preservarium_sandbox import limits

PACKAGE = Path(preservarium_sandbox.__file__).parent
# Module-level numbers outside limits.py that are not limits: what a protocol or the C
# library defines, the accounting of sizes, the gaps of metric buckets.
NOT_LIMITS = {
    "catalog.py": {"SAFETY_INTERVAL_S"},  # a poll's period, for a lost notification
    "engine/outputs.py": {"INT_MIN", "INT_MAX"},  # the int64/uint64 range of the JSON contract
    "engine/template.py": {"_LEARNED_BYTES", "_WEAKREF_BYTES"},  # what objects cost, measured
    "metrics.py": {"BATCH_BUCKETS", "LATENCY_BUCKETS"},
    "worker/footprint.py": {  # mallopt's parameters (malloc.h) and glibc's thresholds
        "M_TRIM_THRESHOLD", "M_MMAP_THRESHOLD", "MMAP_THRESHOLD_BYTES", "TRIM_THRESHOLD_BYTES",
    },
    "worker/hardening/capabilities.py": {"PR_CAPBSET_DROP", "_CAPABILITY_VERSION_3"},
    "worker/hardening/libc.py": {
        "PR_SET_DUMPABLE", "PR_SET_SECCOMP", "PR_SET_NO_NEW_PRIVS", "SECCOMP_MODE_FILTER",
        "CLONE_NEWUSER", "CLONE_NEWNET",
    },
    "worker/hardening/seccomp.py": {
        "SECCOMP_RET_KILL_PROCESS", "SECCOMP_RET_ERRNO", "SECCOMP_RET_ALLOW", "_BPF_LD_W_ABS",
        "_BPF_JEQ_K", "_BPF_JGE_K", "_BPF_JSET_K", "_BPF_RET_K", "_OFFSET_NR", "_OFFSET_ARCH",
        "AUDIT_ARCH_X86_64", "AUDIT_ARCH_AARCH64", "X32_SYSCALL_BIT",
    },
}  # fmt: skip
# limits.py's own constants that size frames rather than bound a parser (in its comments).
FRAME_CONSTANTS = {"ESCAPE_FACTOR", "FRAME_SLACK", "MAX_FRAME_BYTES"}


def _numeric(node: ast.expr) -> bool:
    """A number written in the source: a literal, arithmetic on literals, or a tuple of them."""
    if isinstance(node, ast.Constant):
        return type(node.value) in (int, float)
    if isinstance(node, ast.UnaryOp):
        return _numeric(node.operand)
    if isinstance(node, ast.BinOp):
        return _numeric(node.left) and _numeric(node.right)
    if isinstance(node, ast.Tuple):
        return bool(node.elts) and all(_numeric(item) for item in node.elts)
    return False


def numbers_bound(path: Path) -> set[str]:
    """The names a module binds to a number at its top level."""
    names = set()
    for statement in ast.parse(path.read_text()).body:
        if isinstance(statement, ast.Assign) and _numeric(statement.value):
            names |= {t.id for t in statement.targets if isinstance(t, ast.Name)}
        elif (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and statement.value is not None
            and _numeric(statement.value)
        ):
            names.add(statement.target.id)
    return names


def fixed_limits_table() -> dict[str, str]:
    """fixed limit -> value, from the second table of limits.py's docstring."""
    assert limits.__doc__ is not None
    table = limits.__doc__[limits.__doc__.index("| fixed limit |") :]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0]:
            rows[cells[0]] = cells[1]
    return rows


def test_no_module_but_limits_binds_a_limit_of_its_own() -> None:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module == "limits.py":
            continue
        extra = numbers_bound(path) - NOT_LIMITS.get(module, set())
        if extra:
            found[module] = sorted(extra)
    assert found == {}, "move these to limits.py's fixed limits (or say why they are none)"


def test_the_table_lists_every_fixed_limit() -> None:
    fixed = numbers_bound(PACKAGE / "limits.py") - FRAME_CONSTANTS
    assert set(fixed_limits_table()) == fixed


def test_each_fixed_limit_has_its_value_in_the_table() -> None:
    for name, value in fixed_limits_table().items():
        first = re.match(r"[\d.,]+", value)
        assert first is not None, name
        number = getattr(limits, name)
        written = float(first.group().rstrip(",.").replace(",", ""))
        shown = number[0] if isinstance(number, tuple) else number
        unit = 1024 if " KiB" in value else 1
        assert written * unit == shown, (name, value, number)
