"""Shipped parsers: found from the working directory, published through the parser use case
(checked, their examples run in the real sandbox) and stored only when they changed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from preservarium.db.engine import make_engine
from preservarium.repositories import SQLParserRepository
from preservarium.sandbox_client import SandboxClient
from preservarium_tools.embedded.shipped import (
    ParserState,
    ShippedParser,
    candidates,
    find_parsers_dir,
    publish_shipped,
    read_parsers,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.sandbox import conftest as real_sandbox
from tests.support.sqlite import SQLiteTemplate

PARSER = "def parse(payload, metadata):\n    return {'n': len(payload)}\n"
# The real sandbox service (and a client of it) of tests/sandbox, for this module.
sandbox_db, sandbox, client = real_sandbox.sandbox_db, real_sandbox.sandbox, real_sandbox.client
sandbox_clock = real_sandbox.sandbox_clock

EXAMPLES = """\
- description: two bytes
  input: {device_id: dev-1, payload_hex: "0102"}
  output: {data: {n: 2}}
"""


@pytest.fixture
async def engine(tmp_path: Path, sqlite_template: SQLiteTemplate) -> AsyncIterator[AsyncEngine]:
    created = make_engine(await sqlite_template.copy(tmp_path / "db.sqlite"))
    yield created
    await created.dispose()


def shipped(directory: Path, source: str = PARSER, examples: str = "[]\n") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "demo.py").write_text(source)
    (directory / "demo.examples.yaml").write_text(examples)
    return directory


async def publish(
    engine: AsyncEngine, client: SandboxClient, directory: Path
) -> tuple[list[ParserState], list[str]]:
    """Publish what `directory` ships: the states, and the reasons of those refused."""
    parsers: list[ShippedParser] = read_parsers(directory)[0]
    states, refused = await publish_shipped(engine, client, parsers)
    return states, [each.reason for each in refused]


class TestFinding:
    def test_from_the_working_directory_or_a_parent(self, tmp_path: Path) -> None:
        found = shipped(tmp_path / "examples" / "parsers")
        nested = tmp_path / "a" / "b"
        nested.mkdir(parents=True)
        assert find_parsers_dir(candidates(nested, tmp_path / "elsewhere" / "x.py")) == found

    def test_then_beside_the_installed_package(self, tmp_path: Path) -> None:
        found = shipped(tmp_path / "checkout" / "examples" / "parsers")
        package_file = tmp_path / "checkout" / "tools" / "src" / "preservarium_tools" / "x.py"
        assert find_parsers_dir(candidates(tmp_path / "empty", package_file)) == found

    def test_nowhere(self, tmp_path: Path) -> None:
        assert find_parsers_dir(candidates(tmp_path, tmp_path / "x.py")) is None

    def test_invalid_files_are_refused_with_a_reason(self, tmp_path: Path) -> None:
        directory = shipped(tmp_path)
        (directory / "broken.py").write_text("def parse(:\n")
        (directory / "bad name.py").write_text(PARSER)
        parsers, refused = read_parsers(directory)
        assert [p.device_type for p in parsers] == ["demo"]
        assert parsers[0].examples == "[]\n"
        assert sorted(r.path.name for r in refused) == ["bad name.py", "broken.py"]
        assert "line 1" in next(r.reason for r in refused if r.path.name == "broken.py")


class TestPublish:
    async def test_a_new_version_only_when_the_source_changed(
        self, engine: AsyncEngine, client: SandboxClient, tmp_path: Path
    ) -> None:
        directory = shipped(tmp_path, examples=EXAMPLES)
        first = await publish(engine, client, directory)
        again = await publish(engine, client, directory)
        shipped(directory, PARSER + "# changed\n", examples=EXAMPLES)
        changed = await publish(engine, client, directory)

        assert first == ([ParserState("demo", 1, uploaded=True, active=True)], [])
        assert again == ([ParserState("demo", 1, uploaded=False, active=True)], [])
        assert changed == ([ParserState("demo", 2, uploaded=True, active=True)], [])

    async def test_an_unchanged_source_leaves_a_rollback_alone(
        self, engine: AsyncEngine, client: SandboxClient, tmp_path: Path
    ) -> None:
        repository = SQLParserRepository(engine)
        await repository.upload("demo", "def parse(payload, metadata):\n    return {}\n")
        directory = shipped(tmp_path)
        await publish(engine, client, directory)
        await repository.activate("demo", 1)

        states, _ = await publish(engine, client, directory)

        assert states == [ParserState("demo", 2, uploaded=False, active=False)]
        assert (await repository.get_parser_for_sensor("demo")).version == 1

    async def test_failing_examples_store_nothing(
        self, engine: AsyncEngine, client: SandboxClient, tmp_path: Path
    ) -> None:
        """The examples run, as for `parser upload`: a parser that fails them is refused,
        with the example that failed, and the stack goes on without it."""
        wrong = EXAMPLES.replace("n: 2", "n: 3")
        states, refused = await publish(engine, client, shipped(tmp_path, examples=wrong))

        assert states == []
        assert len(refused) == 1
        assert "1 of 1 examples failed" in refused[0] and "#1 (two bytes)" in refused[0]
        assert await SQLParserRepository(engine).list_parsers() == []

    @pytest.mark.parametrize(
        ("source", "kind"),
        [
            ("def identify(payload, metadata):\n    return 'x'\n", "missing_function"),
            ("def parse(payload, metadata):\n    return {}.__class__\n", "compile_error"),
        ],
    )
    async def test_a_source_the_checks_refuse_is_not_stored(
        self, engine: AsyncEngine, client: SandboxClient, tmp_path: Path, source: str, kind: str
    ) -> None:
        """Before, `up` stored any source that compiled as Python; now the same checks as
        an upload apply (a parse function, RestrictedPython's compile in the sandbox)."""
        states, refused = await publish(engine, client, shipped(tmp_path, source))

        assert states == []
        assert len(refused) == 1 and kind in refused[0]
        assert await SQLParserRepository(engine).list_parsers() == []
