"""SQLParserRepository on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio

import pytest
from preservarium.errors import NotFoundError
from preservarium.repositories import SQLParserRepository
from preservarium.repositories.parsers import source_sha256
from sqlalchemy.ext.asyncio import AsyncEngine

V1 = "def parse(payload, metadata):\n    return {'v': 1}\n"
V2 = "def parse(payload, metadata):\n    return {'v': 2}\n"


async def test_versions_are_numbered_per_type_and_the_newest_is_active(engine: AsyncEngine) -> None:
    repository = SQLParserRepository(engine)
    first = await repository.upload("efento", V1, uploaded_by="alice")
    second = await repository.upload("efento", V2)
    other = await repository.upload("dragino", V1)
    assert (first.version, second.version, other.version) == (1, 2, 1)
    active = await repository.get_parser_for_sensor("efento")
    assert (active.version, active.source, active.active) == (2, V2, True)
    assert active.sha256 == source_sha256(V2)
    assert active.size == len(V2.encode())


async def test_versions_are_immutable_and_listed(engine: AsyncEngine) -> None:
    repository = SQLParserRepository(engine)
    await repository.upload("efento", V1, uploaded_by="alice", examples="- {}\n")
    await repository.upload("efento", V2)
    versions = await repository.list_versions("efento")
    assert [(v.version, v.source, v.active) for v in versions] == [(1, V1, False), (2, V2, True)]
    old = await repository.get_version("efento", 1)
    assert (old.source, old.uploaded_by, old.examples) == (V1, "alice", "- {}\n")


async def test_activation_rolls_back_and_forward(engine: AsyncEngine) -> None:
    repository = SQLParserRepository(engine)
    await repository.upload("efento", V1)
    await repository.upload("efento", V2)
    await repository.activate("efento", 1)
    assert (await repository.get_parser_for_sensor("efento")).source == V1
    await repository.activate("efento", 2)
    assert (await repository.get_parser_for_sensor("efento")).source == V2
    assert (await repository.active_parsers())["efento"].version == 2


async def test_upload_without_activation_keeps_the_active_version(engine: AsyncEngine) -> None:
    repository = SQLParserRepository(engine)
    await repository.upload("efento", V1)
    stored = await repository.upload("efento", V2, activate=False)
    assert (stored.version, stored.active) == (2, False)
    assert (await repository.get_parser_for_sensor("efento")).version == 1


async def test_first_upload_without_activation_has_no_active_parser(engine: AsyncEngine) -> None:
    repository = SQLParserRepository(engine)
    await repository.upload("efento", V1, activate=False)
    with pytest.raises(NotFoundError):
        await repository.get_parser_for_sensor("efento")
    assert await repository.active_parsers() == {}


async def test_concurrent_uploads_get_distinct_versions(engine: AsyncEngine) -> None:
    repository = SQLParserRepository(engine)
    records = await asyncio.gather(
        *(repository.upload("efento", f"# {n}\n" + V1) for n in range(8))
    )
    assert sorted(r.version for r in records) == list(range(1, 9))
    summary = (await repository.list_parsers())[0]
    assert (summary.latest_version, summary.active_version is not None) == (8, True)


async def test_unknown_type_and_version_are_clear_errors(engine: AsyncEngine) -> None:
    repository = SQLParserRepository(engine)
    with pytest.raises(NotFoundError, match="nope"):
        await repository.get_parser_for_sensor("nope")
    with pytest.raises(NotFoundError, match="nope"):
        await repository.list_versions("nope")
    await repository.upload("efento", V1)
    with pytest.raises(NotFoundError, match="version 7"):
        await repository.activate("efento", 7)
