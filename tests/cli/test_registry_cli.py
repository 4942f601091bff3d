"""Devices, stored commands and parser versions through the CLI's entry point, on
both database backends: refusals of what cannot work, and what users of other CLIs expect."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from preservarium.contract import status as gateway_records
from preservarium.db.engine import make_engine
from preservarium.repositories import SQLCommandRepository, SQLParserRepository
from preservarium.repositories.commands import CommandStatus
from preservarium_tools.embedded.broker import EmbeddedBroker

from tests.support.cli import BIN, run_cli, run_cli_process
from tests.support.kafka import TopicReader, prefix
from tests.support.net import free_port

SOURCE = "def parse(payload, metadata):\n    return {'n': len(payload)}\n"


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    # Nothing listens at this Kafka: a command that reached for it would exit 2.
    return {
        "PRESERVARIUM_DATABASE_URL": database_url,
        "PRESERVARIUM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
    }


async def store_parser(database_url: str, device_type: str, *sources: str) -> None:
    engine = make_engine(database_url)
    try:
        for source in sources:
            await SQLParserRepository(engine).upload(device_type, source)
    finally:
        await engine.dispose()


def kafka_env(database_url: str, bootstrap: str) -> dict[str, str]:
    """The CLI's environment with a reachable broker and a topic prefix of its own."""
    return {
        "PRESERVARIUM_DATABASE_URL": database_url,
        "PRESERVARIUM_KAFKA_BOOTSTRAP": bootstrap,
        "PRESERVARIUM_TOPIC_PREFIX": prefix(),
    }


@asynccontextmanager
async def status_topic(broker: EmbeddedBroker, env: dict[str, str]) -> AsyncIterator[TopicReader]:
    """Follow the command.status topic of `env` while the block runs."""
    reader = TopicReader(broker.bootstrap, env["PRESERVARIUM_TOPIC_PREFIX"] + "command.status")
    await reader.start()
    try:
        yield reader
    finally:
        await reader.stop()


async def finish(database_url: str, request_id: str, status: CommandStatus) -> None:
    engine = make_engine(database_url)
    try:
        await SQLCommandRepository(engine).finish(request_id, status)
    finally:
        await engine.dispose()


async def queue(database_url: str, device_id: str, *request_ids: str) -> None:
    engine = make_engine(database_url)
    try:
        for request_id in request_ids:
            await SQLCommandRepository(engine).add(
                request_id=request_id,
                device_id=device_id,
                name="reboot",
                body='{"params":{"delay":1}}',
                expires_at=datetime.now(UTC) + timedelta(hours=1),
            )
    finally:
        await engine.dispose()


def failure(done, code: int = 1) -> str:  # type: ignore[no-untyped-def]
    assert done.returncode == code, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return str(lines[0])


class TestRefusals:
    def test_a_type_without_a_parser_needs_force(self, env: dict[str, str]) -> None:
        line = failure(run_cli("device", "register", "foo", "--type", "notype", env=env))
        assert "no active parser" in line and "--force" in line
        assert json.loads(run_cli("device", "list", "--json", env=env).stdout) == []
        forced = run_cli("device", "register", "foo", "--type", "notype", "--force", env=env)
        assert forced.returncode == 0, forced.stderr

    def test_a_command_for_an_unregistered_device_needs_force(self, env: dict[str, str]) -> None:
        line = failure(run_cli("command", "send", "nosuchdev", "reboot", env=env))
        assert "not registered" in line and "--force" in line and "route" in line
        # With --force it goes on to Kafka (here unreachable: exit 2, not a refusal).
        forced = run_cli("command", "send", "nosuchdev", "reboot", "--force", env=env)
        assert forced.returncode == 2 and "cannot reach Kafka" in forced.stderr


class TestDevices:
    async def test_update_show_and_json_results(
        self, env: dict[str, str], database_url: str
    ) -> None:
        await store_parser(database_url, "alpha", SOURCE)
        await store_parser(database_url, "beta", SOURCE)
        registered = run_cli("device", "register", "d1", "--type", "alpha", "--json", env=env)
        assert json.loads(registered.stdout)["device_type"] == "alpha"
        assert "PRESERVARIUM_DATABASE_URL" in registered.stderr
        assert "no active parser" in failure(
            run_cli("device", "update", "d1", "--type", "gamma", env=env)
        )
        updated = run_cli("device", "update", "d1", "--type", "beta", "--json", env=env)
        assert json.loads(updated.stdout)["device_type"] == "beta", updated.stderr
        await queue(database_url, "d1", "r1", "r2")
        await queue(database_url, "other", "r3")

        shown = json.loads(run_cli("device", "show", "d1", "--json", env=env).stdout)

        assert shown["device_type"] == "beta"
        assert [c["request_id"] for c in shown["pending_commands"]] == ["r2", "r1"]
        assert shown["pending_commands"][0]["params"] == {"delay": 1}
        human = run_cli("device", "show", "d1", env=env)
        assert "2 pending" in human.stdout and "r1" in human.stdout
        removed = run_cli("device", "remove", "d1", "--json", env=env)
        assert json.loads(removed.stdout) == {"id": "d1", "removed": True}

    async def test_attributes_are_set_changed_and_bounded(
        self, env: dict[str, str], database_url: str
    ) -> None:
        await store_parser(database_url, "alpha", SOURCE)
        registered = run_cli(
            "device", "register", "d1", "--type", "alpha", "--attr", "site=north",
            "--attr", "floor=3", "--json", env=env,
        )  # fmt: skip
        assert json.loads(registered.stdout)["attributes"] == {"site": "north", "floor": "3"}
        updated = run_cli(
            "device", "update", "d1", "--attr", "floor=4", "--unset-attr", "site", "--json",
            env=env,
        )  # fmt: skip
        assert json.loads(updated.stdout)["attributes"] == {"floor": "4"}, updated.stderr
        cleared = run_cli("device", "update", "d1", "--clear-attrs", "--attr", "a=b", "--json",
                          env=env)  # fmt: skip
        assert json.loads(cleared.stdout)["attributes"] == {"a": "b"}
        assert "nothing to change" in failure(run_cli("device", "update", "d1", env=env))
        big = "k=" + "x" * 16 * 1024
        assert "over the limit of 16384" in failure(
            run_cli("device", "update", "d1", "--attr", big, env=env)
        )
        assert "over the limit" in failure(
            run_cli("device", "register", "d2", "--type", "alpha", "--attr", big, env=env)
        )
        shown = json.loads(run_cli("device", "show", "d1", "--json", env=env).stdout)
        assert shown["attributes"] == {"a": "b"}
        assert [
            d["id"] for d in json.loads(run_cli("device", "list", "--json", env=env).stdout)
        ] == ["d1"]


class TestCommands:
    async def test_list_and_refused_cancels(self, env: dict[str, str], database_url: str) -> None:
        await queue(database_url, "d1", "r1", "r2")
        await queue(database_url, "d2", "r3")
        await finish(database_url, "r1", CommandStatus.SENT)

        assert "is sent, not queued" in failure(run_cli("command", "cancel", "r1", env=env))
        assert "no command request" in failure(run_cli("command", "cancel", "nope", env=env))
        listed = run_cli("command", "list", "--device", "d1", "--json", env=env)
        assert [(c["request_id"], c["status"]) for c in json.loads(listed.stdout)] == [
            ("r2", "queued"),
            ("r1", "sent"),
        ]
        queued = run_cli("command", "list", "--status", "queued", "--json", env=env)
        assert [c["request_id"] for c in json.loads(queued.stdout)] == ["r3", "r2"]
        assert "--status" in failure(run_cli("command", "list", "--status", "lost", env=env), 2)


class TestCancel:
    """A cancel ends the command in the database and tells command.status consumers."""

    async def test_a_cancel_is_published_as_expired(
        self, broker: EmbeddedBroker, database_url: str
    ) -> None:
        await queue(database_url, "d1", "r1", "r2")
        env = kafka_env(database_url, broker.bootstrap)
        async with status_topic(broker, env) as reader:
            done = await asyncio.to_thread(run_cli, "command", "cancel", "r1", "--json", env=env)

            assert done.returncode == 0, done.stderr
            assert (json.loads(done.stdout)["status"], json.loads(done.stdout)["reason"]) == (
                "expired",
                "cancelled",
            )
            (status,) = await reader.wait_for(lambda record: record["request_id"] == "r1")
        assert status == gateway_records.status_record(
            request_id="r1",
            device_id="d1",
            status="expired",
            at=datetime.fromisoformat(status["at"]),
            reason="cancelled",
        )
        assert status["at"].endswith("Z")
        assert [key for key, _ in reader.records] == [b"d1"]
        listed = run_cli("command", "list", "--status", "queued", "--json", env=env)
        assert [c["request_id"] for c in json.loads(listed.stdout)] == ["r2"]

    async def test_a_status_kafka_did_not_take_is_published_by_cancelling_again(
        self, env: dict[str, str], broker: EmbeddedBroker, database_url: str
    ) -> None:
        await queue(database_url, "d1", "r1")

        line = failure(run_cli("command", "cancel", "r1", env=env), code=2)

        assert "r1 is cancelled" in line and "cancel it again" in line
        (stored,) = json.loads(run_cli("command", "list", "--json", env=env).stdout)
        assert (stored["status"], stored["reason"]) == ("expired", "cancelled")
        reachable = kafka_env(database_url, broker.bootstrap)
        async with status_topic(broker, reachable) as reader:
            again = await asyncio.to_thread(run_cli, "command", "cancel", "r1", env=reachable)
            assert again.returncode == 0, again.stderr
            (status,) = await reader.wait_for(lambda record: record["request_id"] == "r1")
        assert (status["status"], status["reason"]) == ("expired", "cancelled")


class TestParsers:
    async def test_diff_of_two_versions(self, env: dict[str, str], database_url: str) -> None:
        await store_parser(database_url, "alpha", SOURCE, SOURCE.replace("'n'", "'size'"))

        done = run_cli("parser", "diff", "alpha", "1", "2", env=env)

        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[:2] == ["--- alpha v1", "+++ alpha v2"]
        assert "-    return {'n': len(payload)}" in done.stdout
        assert "+    return {'size': len(payload)}" in done.stdout
        as_json = json.loads(run_cli("parser", "diff", "alpha", "1", "2", "--json", env=env).stdout)
        assert (as_json["from"], as_json["to"]) == (1, 2) and "+++ alpha v2" in as_json["diff"]
        assert "version 3" in failure(run_cli("parser", "diff", "alpha", "1", "3", env=env))

    async def test_activate_json(self, env: dict[str, str], database_url: str) -> None:
        await store_parser(database_url, "alpha", SOURCE, SOURCE + "\n")
        done = run_cli("parser", "activate", "alpha", "1", "--json", env=env)
        assert (json.loads(done.stdout)["version"], json.loads(done.stdout)["active"]) == (1, True)


class TestTheCommandItself:
    def test_version(self) -> None:
        done = run_cli_process("--version")
        assert done.returncode == 0 and done.stdout.startswith("preservarium 0.")

    def test_shell_completion_script(self, tmp_path: Path) -> None:
        # `--show-completion` takes no value: it names the shell it runs in (from its
        # parent processes), so it runs from bash, as a user's terminal would. Run inside
        # pytest it found make's `sh` and refused ("Shell sh not supported"). It is not
        # the last command of `bash -c`, which bash would exec in its own place.
        done = subprocess.run(
            ["bash", "-c", f"{shlex.quote(str(BIN / 'preservarium'))} --show-completion; exit $?"],
            env={**os.environ, "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "_PRESERVARIUM_COMPLETE" in done.stdout and "complete -o" in done.stdout

    def test_completion_offers_the_nouns(self) -> None:
        words = {"COMP_WORDS": "preservarium pa", "COMP_CWORD": "1"}
        done = run_cli(env={"_PRESERVARIUM_COMPLETE": "complete_bash", **words})
        assert "parser" in done.stdout.split()
