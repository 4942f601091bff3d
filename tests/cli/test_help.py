"""`--help` is instant: it imports what it shows, not what the commands need to run."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest
from preservarium_tools.cli.app import NOUNS

# Print, as JSON, which heavy modules `preservarium ARGS` imported.
PROBE = """
import json, sys
from preservarium_tools.cli.app import main
sys.argv = ["preservarium", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
heavy = ("sqlalchemy", "alembic", "grpc", "aiokafka", "pydantic_settings",
         "preservarium_tools.cli.up_cmd")
print(json.dumps(sorted(m for m in heavy if m in sys.modules)), file=sys.stderr)
"""


def heavy_imports(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stderr.strip().splitlines()[-1]))


def test_the_top_level_help_imports_no_command() -> None:
    assert heavy_imports("--help") == []


@pytest.mark.parametrize("noun", ["parser", "device", "command"])
def test_a_noun_help_needs_no_database_or_sandbox_client(noun: str) -> None:
    assert heavy_imports(noun, "--help") == []


@pytest.mark.parametrize("noun", sorted(NOUNS))
def test_the_listing_says_what_each_noun_says_of_itself(noun: str) -> None:
    module_name, attribute, is_group, summary = NOUNS[noun]
    target = getattr(importlib.import_module(f"preservarium_tools.cli.{module_name}"), attribute)
    own = target.info.help if is_group else target.__doc__
    assert own.startswith(summary.removesuffix(".")), (own, summary)
