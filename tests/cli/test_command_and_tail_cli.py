"""`preservarium command send` and `preservarium tail` through the CLI's entry point; a
followed topic and Ctrl-C through the real console script."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from preservarium.contract.command_requests import CommandRequest, read_command_request
from preservarium_gateway.kafka import ensure_topics
from preservarium_tools.cli.tail_cmd import Stream, describe
from preservarium_tools.embedded.broker import EmbeddedBroker

from tests.support.cli import BIN, run_cli, run_cli_process
from tests.support.kafka import TopicReader, prefix, produce
from tests.support.net import free_port

AT = "2025-03-01T10:00:00.000Z"
RAW = {"v": 1, "id": "u1", "received_at": AT, "device_type": "efento", "method": "POST",
       "path": "m", "confirmable": True, "remote": "127.0.0.1:5683",
       "payload_b64": base64.b64encode(b"\x01\x02\x03").decode()}  # fmt: skip
PARSED = {"v": 1, "id": "u1", "received_at": AT, "device_type": "efento",
          "parser": {"name": "efento", "version": 2}, "data": {"temperature": 21.5},
          "warnings": []}  # fmt: skip
FAILED = {"v": 1, "id": "u1", "received_at": AT, "device_type": "efento", "payload_b64": "AQ==",
          "error": {"kind": "script_error", "message": "boom", "line": 4}}  # fmt: skip
STATUS = {"v": 1, "request_id": "req-7", "status": "rejected", "at": AT,
          "reason": "params must be a JSON object"}  # fmt: skip


class Kafka:
    """One test's view of the broker: its own topic prefix and the CLI environment."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix()
        self.env = {
            "PRESERVARIUM_KAFKA_BOOTSTRAP": bootstrap,
            "PRESERVARIUM_TOPIC_PREFIX": self.prefix,
        }

    def topic(self, suffix: str) -> str:
        return self.prefix + suffix

    async def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(run_cli, *args, env=self.env)

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """`preservarium ARGS...` left running, for following a topic live."""
        return subprocess.Popen(
            [str(BIN / "preservarium"), *args],
            env={**os.environ, **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    async def produce(self, suffix: str, record: dict[str, Any]) -> None:
        key = record["device_id"].encode() if record.get("device_id") else None
        await produce(self.bootstrap, self.topic(suffix), json.dumps(record).encode(), key=key)


@pytest.fixture
def kafka(broker: EmbeddedBroker) -> Kafka:
    return Kafka(broker.bootstrap)


def assert_usage_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def accepted(record: dict[str, Any]) -> CommandRequest:
    """What the gateway's consumer makes of the record."""
    outcome = read_command_request(
        json.dumps(record).encode(),
        now=datetime.now(UTC),
        default_ttl_s=86_400,
        max_ttl_s=30 * 86_400,
    )
    assert isinstance(outcome, CommandRequest), outcome
    return outcome


class TestCommandSend:
    async def test_publishes_a_request_the_gateway_accepts(self, kafka: Kafka) -> None:
        reader = TopicReader(kafka.bootstrap, kafka.topic("command.request"))
        await reader.start()
        try:
            done = await kafka.cli(
                "command", "send", "dev-1", "set_period", "--params", '{"seconds": 900}',
                "--ttl", "120", "--force",
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            request_id = done.stdout.strip()
            [record] = await reader.wait_for(lambda r: r["request_id"] == request_id)
            assert reader.records[0][0] == b"dev-1"
        finally:
            await reader.stop()
        assert record["ttl_s"] == 120
        request = accepted(record)
        assert (request.device_id, request.command, request.params) == (
            "dev-1", "set_period", {"seconds": 900}
        )  # fmt: skip
        now = datetime.now(UTC)
        assert now + timedelta(seconds=100) < request.expires_at < now + timedelta(seconds=121)

    async def test_json_output_is_the_published_record(self, kafka: Kafka) -> None:
        reader = TopicReader(kafka.bootstrap, kafka.topic("command.request"))
        await reader.start()
        try:
            done = await kafka.cli(
                "command", "send", "dev-2", "reboot", "--request-id", "r-1", "--json", "--force"
            )
            assert done.returncode == 0, done.stderr
            [record] = await reader.wait_for(lambda r: r["request_id"] == "r-1")
        finally:
            await reader.stop()
        assert json.loads(done.stdout) == record
        assert "ttl_s" not in record and record["params"] == {}
        assert accepted(record).command == "reboot"

    @pytest.mark.parametrize(
        ("args", "fragment"),
        [
            (("bad id", "reboot"), "device id"),
            (("dev-1", "reboot", "--params", "[1, 2]"), "--params"),
            (("dev-1", "reboot", "--ttl", str(31 * 86_400)), "--ttl"),
        ],
    )
    def test_refuses_bad_input_in_one_line(self, args: tuple[str, ...], fragment: str) -> None:
        assert_usage_error(run_cli("command", "send", *args), fragment)

    def test_unreachable_broker_is_one_line(self) -> None:
        address = f"127.0.0.1:{free_port()}"
        done = run_cli(
            "command",
            "send",
            "dev-1",
            "reboot",
            "--force",
            env={"PRESERVARIUM_KAFKA_BOOTSTRAP": address},
        )
        assert_usage_error(done, address)

    def test_without_aiokafka_says_which_extra_to_install(self, tmp_path: Path) -> None:
        blocker = tmp_path / "aiokafka"
        blocker.mkdir()
        (blocker / "__init__.py").write_text("raise ImportError('not installed')\n")
        # A fresh interpreter: this one has imported aiokafka already.
        done = run_cli_process(
            "command", "send", "dev-1", "reboot", "--force", env={"PYTHONPATH": str(tmp_path)}
        )
        assert_usage_error(done, "preservarium-sdk[kafka]")


class TestTail:
    async def test_json_lines_from_the_beginning(self, kafka: Kafka) -> None:
        first, second = (
            {**PARSED, "device_id": "a", "id": "1"},
            {**PARSED, "device_id": "b", "id": "2"},
        )
        await kafka.produce("uplink.parsed", first)
        await kafka.produce("uplink.parsed", second)
        done = await kafka.cli("tail", "parsed", "--json", "--from-beginning", "--count", "2")
        assert done.returncode == 0, done.stderr
        shown = [json.loads(line) for line in done.stdout.splitlines()]
        assert sorted(shown, key=lambda r: r["id"]) == [first, second]

    @pytest.mark.parametrize(
        ("stream", "suffix", "record", "essentials"),
        [
            ("raw", "uplink.raw", RAW, ["POST", " m ", "3 bytes"]),
            ("parsed", "uplink.parsed", PARSED, ["efento v2", '{"temperature":21.5}']),
            ("failed", "uplink.failed", FAILED, ["script_error", "line 4", "boom"]),
            ("status", "command.status", STATUS, ["req-7", "rejected", STATUS["reason"]]),
        ],
    )
    async def test_human_line_for_the_chosen_device(
        self,
        kafka: Kafka,
        stream: str,
        suffix: str,
        record: dict[str, Any],
        essentials: list[str],
    ) -> None:
        await kafka.produce(suffix, {**record, "device_id": "someone-else"})
        await kafka.produce(suffix, {**record, "device_id": "dev-h"})
        done = await kafka.cli(
            "tail", stream, "--from-beginning", "--count", "1", "--device", "dev-h"
        )
        assert done.returncode == 0, done.stderr
        [line] = done.stdout.splitlines()
        for fragment in [AT, "dev-h", *essentials]:
            assert fragment in line, line

    async def test_follows_a_topic_that_did_not_exist_and_stops_on_ctrl_c(
        self, kafka: Kafka
    ) -> None:
        with kafka.spawn("tail", "failed", "--json") as tail:
            try:
                ready = await asyncio.to_thread(tail.stderr.readline)  # type: ignore[union-attr]
                assert "following" in ready
                record = {**FAILED, "device_id": "late"}
                await kafka.produce("uplink.failed", record)
                line = await asyncio.to_thread(tail.stdout.readline)  # type: ignore[union-attr]
                assert json.loads(line) == record
                tail.send_signal(signal.SIGINT)
                # Exiting takes well under a second; a generous bound, so that a miss means a hang.
                _, rest = await asyncio.to_thread(tail.communicate, timeout=60)
            finally:
                if tail.poll() is None:
                    tail.kill()
        assert tail.returncode == 0
        assert rest == ""

    async def test_starts_at_the_end(self, kafka: Kafka) -> None:
        await kafka.produce("command.status", {**STATUS, "device_id": "dev-old"})
        with kafka.spawn("tail", "status", "--count", "1") as tail:
            try:
                await asyncio.to_thread(tail.stderr.readline)  # type: ignore[union-attr]
                await kafka.produce("command.status", {**STATUS, "device_id": "dev-new"})
                out, _ = await asyncio.to_thread(tail.communicate, timeout=60)
            finally:
                if tail.poll() is None:
                    tail.kill()
        assert tail.returncode == 0
        assert "dev-new" in out and "dev-old" not in out

    def test_unreachable_broker_is_one_line(self) -> None:
        address = f"127.0.0.1:{free_port()}"
        done = run_cli("tail", "raw", env={"PRESERVARIUM_KAFKA_BOOTSTRAP": address})
        assert_usage_error(done, address)


class TestTailAcrossPartitions:
    async def test_from_the_beginning_is_in_time_order(self, kafka: Kafka) -> None:
        topic = kafka.topic("uplink.parsed")
        await ensure_topics(kafka.bootstrap, (topic,), partitions=3)
        start = int(time.time() * 1000) - 60_000
        # Each partition in order; together interleaved: 1 on p0, 2 on p1, 3 on p2, 4 on p0...
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
        await producer.start()
        try:
            for n in range(1, 7):
                record = json.dumps({**PARSED, "id": str(n), "device_id": f"d{n}"}).encode()
                await producer.send_and_wait(
                    topic, record, partition=(n - 1) % 3, timestamp_ms=start + n * 1000
                )
        finally:
            await producer.stop()

        done = await kafka.cli("tail", "parsed", "--from-beginning", "--count", "6", "--json")

        assert done.returncode == 0, done.stderr
        assert [json.loads(line)["id"] for line in done.stdout.splitlines()] == list("123456")

    async def test_device_matches_the_record_key(self, kafka: Kafka) -> None:
        await kafka.produce("uplink.raw", {**RAW, "device_id": None, "id": "other"})
        key = b"dev-k"
        value = json.dumps({**RAW, "device_id": None, "id": "keyed"}).encode()
        await produce(kafka.bootstrap, kafka.topic("uplink.raw"), value, key=key)
        done = await kafka.cli(
            "tail", "raw", "--from-beginning", "--count", "1", "--device", "dev-k", "--json"
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["id"] == "keyed"


@pytest.mark.parametrize(("count", "shown"), [(1, "(1 warning)"), (2, "(2 warnings)")])
def test_warnings_are_counted_in_english(count: int, shown: str) -> None:
    line = describe(Stream.parsed, {**PARSED, "warnings": ["w"] * count})
    assert line.endswith(shown)


def test_a_failure_names_its_line_once() -> None:
    error = {"kind": "runtime_error", "message": "line 4: ZeroDivisionError: x", "line": 4}
    line = describe(Stream.failed, {**FAILED, "error": error})
    assert line.endswith("runtime_error at line 4: ZeroDivisionError: x")
