"""`preservarium parser test` and `parser upload --examples` against a real sandbox."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from preservarium_sandbox.limits import Limits
from preservarium_sandbox.server import SandboxServer

from tests.sandbox.conftest import sandbox_config
from tests.support.cli import run_cli
from tests.support.net import free_port
from tests.support.sqlite import SQLiteTemplate

PARSER = """\
def identify(payload, metadata):
    return "dev-" + payload.hex()[:4]

def parse(payload, metadata):
    if payload == b"\\xff":
        return {"n": 1 // 0}
    warn("checked")
    return {
        "n": len(payload),
        "path": metadata["path"],
        "method": metadata["method"],
        "confirmable": metadata["confirmable"],
        "device_id": metadata["device_id"],
        "type": metadata["device_type"],
    }

def reply(payload, metadata):
    return b"\\x01\\x02"

def format_command(command):
    if command["command"] != "set_period":
        raise ValueError("unknown command")
    return bytes([command["params"]["seconds"] // 60])
"""
FAILING_LINE = PARSER.splitlines().index('        return {"n": 1 // 0}') + 1
RESTRICTED = "def parse(payload, metadata):\n    _hidden = 1\n    return {}\n"
SPEC_KEYS = {"ok", "device_id", "data", "reply_hex", "command_hex", "warnings", "duration_ms"}
SET_PERIOD = '{"command": "set_period", "params": {"seconds": 900}}'

EXAMPLES = """\
- description: a route contact is identified
  input: {path: m, payload_hex: "0a0b0c"}
  output:
    device_id: dev-0a0b
    data: {n: 3.0, path: m, method: POST, confirmable: true, device_id: dev-0a0b, type: demo}
- description: a registered device gets a reply
  input: {device_id: sensor-1, payload_b64: "AQ==", confirmable: false, method: put}
  output: {reply_hex: "0102", warnings: [checked]}
- description: a bad payload is refused
  input: {device_id: sensor-1, payload_hex: ff}
  error: runtime_error
- description: set period
  command: {command: set_period, params: {seconds: 900}}
  output_hex: "0f"
- description: unknown commands fail
  command: {command: reboot}
  error: runtime_error
"""
WRONG_EXAMPLE = """\
- description: a registered device
  input: {device_id: sensor-1, payload_hex: "0a0b"}
  output: {data: {n: 3}}
"""


@pytest.fixture(scope="module")
async def sandbox_addr(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: SQLiteTemplate
) -> AsyncIterator[str]:
    url = await sqlite_template.copy(tmp_path_factory.mktemp("cli-sandbox") / "sandbox.db")
    # The shipped Efento parser's 49 examples are no test of speed: with the suite's
    # other workers beside it a 100 ms call limit timed them out (a second is still a limit).
    async with SandboxServer(sandbox_config(url, limits=Limits(timeout_ms=1000))) as server:
        yield server.config.listen


@pytest.fixture
async def env(sandbox_addr: str, tmp_path: Path, sqlite_template: SQLiteTemplate) -> dict[str, str]:
    url = await sqlite_template.copy(tmp_path / "cli.db")
    return {"PRESERVARIUM_SANDBOX_ADDR": sandbox_addr, "PRESERVARIUM_DATABASE_URL": url}


@pytest.fixture
def demo(tmp_path: Path) -> str:
    """The parser file; its name makes the default device type `demo`."""
    path = tmp_path / "demo.py"
    path.write_text(PARSER)
    return str(path)


async def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The console script, off the event loop so the in-process sandbox keeps serving."""
    return await asyncio.to_thread(run_cli, *args, env=env)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


class TestSingleRun:
    async def test_registered_contact_json_with_metadata_options(
        self, env: dict[str, str], demo: str
    ) -> None:
        done = await cli(
            "parser", "test", demo, "--payload-hex", "0a0b", "--device-id", "sensor-1",
            "--path", "sub/x", "--method", "put", "--non", "--json", env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        outcome = json.loads(done.stdout)
        assert set(outcome) == SPEC_KEYS
        assert outcome["ok"] is True
        assert outcome["device_id"] == "sensor-1"
        assert outcome["data"] == {
            "n": 2,
            "path": "sub/x",
            "method": "PUT",
            "confirmable": False,
            "device_id": "sensor-1",
            "type": "demo",
        }
        assert (outcome["reply_hex"], outcome["command_hex"]) == ("0102", None)
        assert outcome["warnings"] == ["checked"]
        assert isinstance(outcome["duration_ms"], float)

    async def test_route_contact_is_identified_and_command_formatted(
        self, env: dict[str, str], demo: str
    ) -> None:
        done = await cli(
            "parser", "test", demo, "--payload-hex", "0a0b", "--path", "m",
            "--command", SET_PERIOD, "--json", env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        outcome = json.loads(done.stdout)
        assert outcome["device_id"] == "dev-0a0b"
        assert outcome["data"]["device_id"] == "dev-0a0b"
        assert (outcome["data"]["method"], outcome["data"]["confirmable"]) == ("POST", True)
        assert outcome["command_hex"] == "0f"

    async def test_attributes_of_the_device_reach_parse_and_the_command(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        source = (
            "def parse(payload, metadata):\n"
            "    return {'attributes': metadata['attributes'], 'uplink': metadata['uplink_id']}\n"
            "def format_command(command):\n"
            "    return command['attributes']['unit'].encode()\n"
        )
        parser = write(tmp_path, "ctx.py", source)
        done = await cli(
            "parser", "test", parser, "--payload-hex", "01", "--device-id", "d1",
            "--attr", "unit=C", "--attr", "site=north", "--command", '{"command": "x"}',
            "--json", env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        outcome = json.loads(done.stdout)
        assert outcome["data"] == {"attributes": {"unit": "C", "site": "north"}, "uplink": None}
        assert bytes.fromhex(outcome["command_hex"]) == b"C"
        refused = await cli("parser", "test", parser, "--attr", "unit=C", env=env)
        assert "--attr needs --device-id" in one_line(refused, 2)

    async def test_human_output(self, env: dict[str, str], demo: str) -> None:
        done = await cli("parser", "test", demo, "--payload-hex", "0a0b", env=env)
        assert done.returncode == 0, done.stderr
        for fragment in ("dev-0a0b", "0102", '"n": 2', "checked"):
            assert fragment in done.stdout

    async def test_runtime_error_names_the_line(self, env: dict[str, str], demo: str) -> None:
        done = await cli("parser", "test", demo, "--payload-hex", "ff", "--json", env=env)
        assert done.returncode == 1, done.stderr
        outcome = json.loads(done.stdout)
        assert set(outcome) == {"ok", "error"} and outcome["ok"] is False
        assert set(outcome["error"]) == {"kind", "message", "line"}
        assert (outcome["error"]["kind"], outcome["error"]["line"]) == (
            "runtime_error",
            FAILING_LINE,
        )

    async def test_human_runtime_error_names_the_line_once(
        self, env: dict[str, str], demo: str
    ) -> None:
        done = await cli("parser", "test", demo, "--payload-hex", "ff", env=env)
        assert done.returncode == 1, done.stderr
        assert f"runtime_error at line {FAILING_LINE}" in done.stdout
        assert done.stdout.lower().count(f"line {FAILING_LINE}") == 1, done.stdout

    async def test_failing_command_is_a_script_error(self, env: dict[str, str], demo: str) -> None:
        done = await cli(
            "parser", "test", demo, "--command", '{"command": "reboot"}', "--json", env=env
        )
        assert done.returncode == 1, done.stderr
        assert json.loads(done.stdout)["error"]["kind"] == "runtime_error"

    async def test_compile_error(self, env: dict[str, str], tmp_path: Path) -> None:
        path = write(tmp_path, "restricted.py", RESTRICTED)
        done = await cli("parser", "test", path, "--payload-hex", "00", "--json", env=env)
        assert done.returncode == 1, done.stderr
        error = json.loads(done.stdout)["error"]
        assert (error["kind"], error["line"]) == ("compile_error", 2)


class TestUsageAndInfrastructure:
    async def test_bad_payload_hex(self, env: dict[str, str], demo: str) -> None:
        done = await cli("parser", "test", demo, "--payload-hex", "0g", env=env)
        assert "--payload-hex" in one_line(done, 2)

    async def test_sandbox_down_stores_nothing(
        self, env: dict[str, str], demo: str, tmp_path: Path
    ) -> None:
        address = f"127.0.0.1:{free_port()}"
        down = {**env, "PRESERVARIUM_SANDBOX_ADDR": address}
        done = await cli("parser", "test", demo, "--payload-hex", "00", env=down)
        assert address in one_line(done, 2)
        examples = write(tmp_path, "examples.yaml", EXAMPLES)
        done = await cli("parser", "upload", "demo", demo, "--examples", examples, env=down)
        assert address in one_line(done, 2)
        listed = await cli("parser", "list", "--json", env=env)
        assert json.loads(listed.stdout) == []


class TestExamples:
    async def test_all_passing(self, env: dict[str, str], demo: str, tmp_path: Path) -> None:
        examples = write(tmp_path, "examples.yaml", EXAMPLES)
        done = await cli("parser", "test", demo, "--examples", examples, "--json", env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        results = json.loads(done.stdout)
        assert [(r["index"], r["ok"], r["mismatch"]) for r in results] == [
            (index, True, None) for index in range(1, 6)
        ]
        assert results[3]["description"] == "set period"

    async def test_a_mismatch_is_printed(
        self, env: dict[str, str], demo: str, tmp_path: Path
    ) -> None:
        examples = write(tmp_path, "examples.yaml", EXAMPLES + WRONG_EXAMPLE)
        done = await cli("parser", "test", demo, "--examples", examples, env=env)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "data.n: expected 3, got 2" in done.stdout
        assert "6 examples: 5 passed, 1 failed" in done.stdout

    async def test_upload_refuses_a_version_whose_examples_fail(
        self, env: dict[str, str], demo: str, tmp_path: Path
    ) -> None:
        examples = write(tmp_path, "examples.yaml", WRONG_EXAMPLE)
        done = await cli("parser", "upload", "demo", demo, "--examples", examples, env=env)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "data.n: expected 3, got 2" in done.stderr
        listed = await cli("parser", "list", "--json", env=env)
        assert json.loads(listed.stdout) == []

    async def test_upload_stores_passing_examples(
        self, env: dict[str, str], demo: str, tmp_path: Path
    ) -> None:
        examples = write(tmp_path, "examples.yaml", EXAMPLES)
        done = await cli("parser", "upload", "demo", demo, "--examples", examples, env=env)
        assert (done.returncode, done.stdout.strip()) == (0, "1"), done.stderr
        shown = json.loads((await cli("parser", "show", "demo", "--json", env=env)).stdout)
        assert (shown["version"], shown["examples"]) == (1, EXAMPLES)

    async def test_upload_refuses_what_the_sandbox_will_not_compile(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        source = "def parse(payload, metadata):\n    return {'c': payload.__class__}\n"
        done = await cli("parser", "upload", "demo", write(tmp_path, "bad.py", source), env=env)
        assert done.returncode == 1, done.stdout + done.stderr
        line = one_line(done, 1)
        assert "compile_error at line 2: " in line
        assert line.count("line 2") == 1, line  # the line is named once
        listed = await cli("parser", "list", "--json", env=env)
        assert json.loads(listed.stdout) == []

    async def test_the_shipped_parsers_upload_with_their_examples(
        self, env: dict[str, str]
    ) -> None:
        from tests.conftest import ROOT

        for name in ("efento", "dragino"):
            parser = str(ROOT / "examples" / "parsers" / f"{name}.py")
            examples = str(ROOT / "examples" / "parsers" / f"{name}.examples.yaml")
            done = await cli("parser", "upload", name, parser, "--examples", examples, env=env)
            assert (done.returncode, done.stdout.strip()) == (0, "1"), done.stderr


class TestUploadChecks:
    async def test_no_parse_function_is_refused_sandbox_or_not(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        path = write(tmp_path, "noparse.py", "def nothing(payload, metadata):\n    return {}\n")
        down = {**env, "PRESERVARIUM_SANDBOX_ADDR": f"127.0.0.1:{free_port()}"}
        for where in (env, down):
            done = await cli("parser", "upload", "demo", path, "--force", env=where)
            assert "missing_function" in one_line(done, 1)
        listed = await cli("parser", "list", "--json", env=env)
        assert json.loads(listed.stdout) == []

    async def test_what_the_sandbox_cannot_check_is_stored_only_with_force(
        self, env: dict[str, str], demo: str
    ) -> None:
        address = f"127.0.0.1:{free_port()}"
        down = {**env, "PRESERVARIUM_SANDBOX_ADDR": address}
        line = one_line(await cli("parser", "upload", "demo", demo, env=down), 2)
        assert address in line and "--force" in line
        assert json.loads((await cli("parser", "list", "--json", env=env)).stdout) == []
        forced = await cli("parser", "upload", "demo", demo, "--force", env=down)
        assert (forced.returncode, forced.stdout.strip()) == (0, "1"), forced.stderr
        assert "warning: not checked in the sandbox" in forced.stderr

    async def test_the_same_source_again_makes_no_version(
        self, env: dict[str, str], demo: str, tmp_path: Path
    ) -> None:
        first = await cli("parser", "upload", "demo", demo, env=env)
        assert first.stdout.strip() == "1", first.stderr
        other = write(tmp_path, "other.py", PARSER + "\n# v2\n")
        assert (await cli("parser", "upload", "demo", other, env=env)).stdout.strip() == "2"

        again = await cli("parser", "upload", "demo", demo, "--json", env=env)

        assert again.returncode == 0, again.stderr
        result = json.loads(again.stdout)
        assert (result["version"], result["created"], result["active"]) == (1, False, True)
        listed = json.loads((await cli("parser", "list", "--json", env=env)).stdout)
        assert [(p["latest_version"], p["active_version"]) for p in listed] == [(2, 1)]

    async def test_exit_codes_agree_with_parser_test(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        restricted = write(tmp_path, "restricted.py", RESTRICTED)
        missing = str(tmp_path / "missing.py")
        for path, code in ((restricted, 1), (missing, 2)):
            tested = await cli("parser", "test", path, env=env)
            uploaded = await cli("parser", "upload", "demo", path, env=env)
            assert (tested.returncode, uploaded.returncode) == (code, code), uploaded.stderr
