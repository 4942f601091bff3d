"""Real services for the suite: a Kafka-protocol broker and PostgreSQL databases.

A missing service is a failure, never a skip.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from preservarium.db.engine import make_engine
from preservarium_tools.embedded.broker import EmbeddedBroker
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.net import free_port
from tests.support.postgres import empty_database, migrated_database
from tests.support.sqlite import SQLiteTemplate

ROOT = Path(__file__).resolve().parents[1]
# The suite's own test data (attack corpus, device notes): everything lives in the repository.
DATA = ROOT / "tests" / "data"


# Modules that share the image builds (one replay of the Dockerfiles, about a minute of CPU):
# under pytest-xdist they run on one worker, first, so the build is done once and early.
IMAGE_MODULES = ("tests/packaging/test_images.py", "tests/packaging/test_stack.py")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups off the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep each module on one pytest-xdist worker (its module fixtures start once) and
    put the image builds first, so the longest group never starts last.

    Under `--dist loadgroup` a group is one unit of work; without xdist the marks are inert
    and only the order changes (the image tests, then everything else as collected).
    """
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        group = "images" if module in IMAGE_MODULES else module
        item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: item.nodeid.split("::", 1)[0] not in IMAGE_MODULES)


def pytest_addoption(parser: pytest.Parser) -> None:
    """--console-screenshots DIR: the console's browser test writes a PNG of each page
    there (scripts/console-screenshots refreshes docs/images/ with it)."""
    parser.addoption("--console-screenshots", metavar="DIR", default=None)


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """PRESERVARIUM_DATA_DIR for the whole run: nothing a test starts (the CLI, `up`, a
    service) ever writes into the user's own data directory."""
    path = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRESERVARIUM_DATA_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
async def broker() -> AsyncIterator[EmbeddedBroker]:
    """One Tansu broker for the whole run, on a free port."""
    async with EmbeddedBroker(port=free_port()) as running:
        yield running


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SQLiteTemplate:
    """Migrated SQLite databases, copied from one migrated once per run."""
    return SQLiteTemplate(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
async def postgres_database() -> AsyncIterator[str]:
    """One migrated PostgreSQL database for the run, emptied for each test that uses it."""
    async with migrated_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: SQLiteTemplate,
    postgres_database: str,
) -> AsyncIterator[str]:
    """An empty, migrated database on each backend."""
    if request.param == "sqlite":
        yield await sqlite_template.copy(tmp_path / "test.db")
        return
    await empty_database(postgres_database)
    yield postgres_database


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the migrated database of `database_url`."""
    created = make_engine(database_url)
    yield created
    await created.dispose()
