"""Shipped parsers: found from the working directory, uploaded only when they changed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from preservarium.db.engine import make_engine
from preservarium.repositories import SQLParserRepository
from preservarium_tools.embedded.shipped import (
    ParserState,
    candidates,
    find_parsers_dir,
    read_parsers,
    upload_changed,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.sqlite import SQLiteTemplate

PARSER = "def parse(payload, metadata):\n    return {'n': len(payload)}\n"


@pytest.fixture
async def engine(tmp_path: Path, sqlite_template: SQLiteTemplate) -> AsyncIterator[AsyncEngine]:
    created = make_engine(await sqlite_template.copy(tmp_path / "db.sqlite"))
    yield created
    await created.dispose()


def shipped(directory: Path, source: str = PARSER) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "demo.py").write_text(source)
    (directory / "demo.examples.yaml").write_text("[]\n")
    return directory


class TestFinding:
    def test_from_the_working_directory_or_a_parent(self, tmp_path: Path) -> None:
        found = shipped(tmp_path / "examples" / "parsers")
        nested = tmp_path / "a" / "b"
        nested.mkdir(parents=True)
        assert find_parsers_dir(candidates(nested, tmp_path / "elsewhere" / "x.py")) == found

    def test_then_beside_the_installed_package(self, tmp_path: Path) -> None:
        found = shipped(tmp_path / "checkout" / "examples" / "parsers")
        package_file = tmp_path / "checkout" / "sdk" / "src" / "preservarium" / "__init__.py"
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


class TestUpload:
    async def test_a_new_version_only_when_the_source_changed(
        self, engine: AsyncEngine, tmp_path: Path
    ) -> None:
        directory = shipped(tmp_path)
        first = await upload_changed(engine, read_parsers(directory)[0])
        again = await upload_changed(engine, read_parsers(directory)[0])
        shipped(directory, PARSER + "# changed\n")
        changed = await upload_changed(engine, read_parsers(directory)[0])

        assert first == [ParserState("demo", 1, uploaded=True, active=True)]
        assert again == [ParserState("demo", 1, uploaded=False, active=True)]
        assert changed == [ParserState("demo", 2, uploaded=True, active=True)]

    async def test_an_unchanged_source_leaves_a_rollback_alone(
        self, engine: AsyncEngine, tmp_path: Path
    ) -> None:
        repository = SQLParserRepository(engine)
        await repository.upload("demo", "def parse(payload, metadata):\n    return {}\n")
        directory = shipped(tmp_path)
        await upload_changed(engine, read_parsers(directory)[0])
        await repository.activate("demo", 1)

        states = await upload_changed(engine, read_parsers(directory)[0])

        assert states == [ParserState("demo", 2, uploaded=False, active=False)]
        assert (await repository.get_parser_for_sensor("demo")).version == 1
