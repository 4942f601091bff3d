"""What a new user trips on: where the database is, commands on a missing one, bad
settings, and refusals of what cannot work. The commands run in this process with a
user's environment; the real console script where its start is the point."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from preservarium.db.migrate import head_revision, shipped_head

from tests.support.cli import run_cli, run_cli_process
from tests.support.net import free_port

GOOD = "def parse(payload, metadata):\n    return {'n': len(payload)}\n"


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """A user's environment: no PRESERVARIUM_* at all, HOME in a temporary directory."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PRESERVARIUM_", "XDG_"))}
    # Nothing listens here: a command that needs the sandbox must say so, not hang.
    sandbox = f"127.0.0.1:{free_port()}"
    return {**clean, "HOME": str(home), "PRESERVARIUM_SANDBOX_ADDR": sandbox, **extra}


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=env, cwd=cwd, inherit=False)


def one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    """A home and three unrelated working directories."""
    found = {name: tmp_path / name for name in ("home", "a", "b", "c")}
    for path in found.values():
        path.mkdir()
    return found


class TestTheDefaultDatabase:
    def test_is_the_same_from_any_directory_in_the_user_data_dir(
        self, places: dict[str, Path]
    ) -> None:
        env = user_env(places["home"])
        database = places["home"] / ".local" / "share" / "preservarium" / "preservarium.db"

        upgraded = cli("db", "upgrade", env=env, cwd=places["a"])
        assert upgraded.returncode == 0, upgraded.stderr
        assert str(database) in upgraded.stdout and "PRESERVARIUM_DATABASE_URL" in upgraded.stdout
        parser = places["b"] / "demo.py"
        parser.write_text(GOOD)
        stored = cli("parser", "upload", "demo", str(parser), "--force", env=env, cwd=places["b"])
        assert stored.returncode == 0, stored.stderr
        assert f"stored in sqlite+aiosqlite:///{database}  (PRESERVARIUM_DATABASE_URL)" in (
            stored.stderr
        )
        registered = cli("device", "register", "d1", "--type", "demo", env=env, cwd=places["c"])
        assert registered.returncode == 0, registered.stderr
        assert str(database) in registered.stderr

        listed = cli("device", "list", "--json", env=env, cwd=places["a"])
        assert [d["id"] for d in json.loads(listed.stdout)] == ["d1"]
        assert database.is_file()
        assert not any((places[name] / "var").exists() for name in ("a", "b", "c"))

    def test_follows_xdg_data_home_and_data_dir(self, places: dict[str, Path]) -> None:
        xdg = places["home"] / "xdg"
        env = user_env(places["home"], XDG_DATA_HOME=str(xdg))
        assert cli("db", "upgrade", env=env, cwd=places["a"]).returncode == 0
        assert (xdg / "preservarium" / "preservarium.db").is_file()

        chosen = places["home"] / "chosen"
        env = user_env(places["home"], PRESERVARIUM_DATA_DIR=str(chosen))
        assert cli("db", "upgrade", env=env, cwd=places["b"]).returncode == 0
        assert (chosen / "preservarium.db").is_file()


class TestAMissingDatabase:
    @pytest.mark.parametrize(
        "args",
        [
            ("device", "list"),
            ("device", "show", "d1"),
            ("parser", "list", "--json"),
            ("parser", "show", "demo"),
            ("command", "list"),
        ],
    )
    def test_read_commands_create_nothing_and_say_what_to_run(
        self, places: dict[str, Path], args: tuple[str, ...]
    ) -> None:
        env = user_env(places["home"])
        line = one_line(cli(*args, env=env, cwd=places["a"]), 2)
        assert "no database at" in line and "preservarium db upgrade" in line
        assert not (places["home"] / ".local").exists()
        assert not (places["a"] / "var").exists()

    def test_write_commands_do_not_migrate_either(self, places: dict[str, Path]) -> None:
        env = user_env(places["home"])
        done = cli("device", "register", "d1", "--type", "t", "--force", env=env, cwd=places["a"])
        assert "preservarium db upgrade" in one_line(done, 2)
        assert not (places["home"] / ".local").exists()

    def test_an_unmigrated_database_says_so(self, places: dict[str, Path]) -> None:
        path = places["a"] / "empty.db"
        sqlite3.connect(path).close()
        env = user_env(places["home"], PRESERVARIUM_DATABASE_URL=f"sqlite+aiosqlite:///{path}")
        line = one_line(cli("parser", "list", env=env, cwd=places["a"]), 2)
        assert "has no schema" in line and "preservarium db upgrade" in line


class TestBadSettings:
    @pytest.mark.parametrize(
        "args", [("parser", "list"), ("device", "list"), ("tail", "raw"), ("db", "upgrade")]
    )
    def test_every_command_names_the_variable_and_exits_2(
        self, places: dict[str, Path], args: tuple[str, ...]
    ) -> None:
        env = user_env(places["home"], PRESERVARIUM_LOG_LEVEL="LOUD")
        line = one_line(cli(*args, env=env, cwd=places["a"]), 2)
        assert line.startswith("error: PRESERVARIUM_LOG_LEVEL:")

    def test_help_and_version_still_work(self, places: dict[str, Path]) -> None:
        # The real console script: the entry point checks the settings before any command.
        env = user_env(places["home"], PRESERVARIUM_LOG_LEVEL="LOUD")
        assert run_cli_process("--help", env=env, cwd=places["a"], inherit=False).returncode == 0
        refused = run_cli_process("parser", "list", env=env, cwd=places["a"], inherit=False)
        assert one_line(refused, 2).startswith("error: PRESERVARIUM_LOG_LEVEL:")
        version = run_cli_process("--version", env=env, cwd=places["a"], inherit=False)
        assert version.returncode == 0 and version.stdout.startswith("preservarium ")


def test_db_upgrade_json_names_the_database(places: dict[str, Path]) -> None:
    chosen = places["home"] / "chosen"
    env = user_env(places["home"], PRESERVARIUM_DATA_DIR=str(chosen))
    done = cli("db", "upgrade", "--json", env=env, cwd=places["a"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "revision": shipped_head(),
        "database_url": f"sqlite+aiosqlite:///{chosen}/preservarium.db",
    }


def test_the_shipped_head_is_alembics() -> None:
    # The CLI reads the head from the migration files (Alembic costs a second a command).
    assert shipped_head() == head_revision()
