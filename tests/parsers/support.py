"""Run shipped parsers and their examples files through the real sandbox service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from preservarium.contract.command_requests import encode_params
from preservarium.sandbox_answers import ParseAnswer, TrialAnswer
from preservarium.sandbox_client import CommandInput, SandboxClient

PARSERS = Path(__file__).resolve().parents[2] / "examples" / "parsers"


RECEIVED_AT = 1_700_000_000


def source(name: str) -> str:
    """The source of examples/parsers/{name}.py."""
    return (PARSERS / f"{name}.py").read_text(encoding="utf-8")


def examples(name: str) -> list[dict[str, Any]]:
    """The examples of examples/parsers/{name}.examples.yaml."""
    loaded = yaml.safe_load((PARSERS / f"{name}.examples.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, list), f"{name}.examples.yaml is not a list"
    return loaded


def ok(trial: TrialAnswer) -> ParseAnswer:
    """The answer of a successful contact, or a failure that shows the parser's error."""
    assert trial.answer.error is None, str(trial.answer.error)
    return trial.answer


def data_of(trial: TrialAnswer) -> Any:
    """The parse() output of a successful contact."""
    return json.loads(ok(trial).data_json)


def failure(trial: TrialAnswer) -> tuple[str, str]:
    """(error kind, message) of a failed contact."""
    error = trial.answer.error
    assert error is not None, f"expected an error, got {trial.answer.data_json!r}"
    return error.kind, error.message


def command_outcome(trial: TrialAnswer) -> tuple[str, bytes | str]:
    """("ok", payload) or (error kind, message) of a format_command call."""
    assert trial.answer.error is None, trial.answer.error.message
    command = trial.answer.command
    assert command is not None, "the sandbox did not run format_command"
    if command.error is not None:
        return command.error.kind, command.error.message
    assert command.payload is not None
    return "ok", command.payload


async def run_command(
    client: SandboxClient, src: str, name: str, params: dict[str, Any] | None = None
) -> tuple[str, bytes | str]:
    """format_command() of `src` for one command."""
    command = CommandInput(
        request_id="test",
        device_id="test-device",
        command=name,
        params_json=encode_params(params or {}),
    )
    return command_outcome(await client.test_parser(src, command=command))


async def check_example(
    client: SandboxClient, src: str, device_type: str, example: dict[str, Any]
) -> None:
    """Run one example exactly as `parser upload --examples` does, and assert it passes."""
    from preservarium.examples import load_examples, run_examples

    (loaded,) = load_examples(yaml.safe_dump([example]))
    (result,) = await run_examples(client, src, [loaded], device_type)
    assert result.ok, f"{result.description}: {result.mismatch}"


async def check_with_sdk_runner(client: SandboxClient, name: str, device_type: str) -> int:
    """Run the examples file through the SDK's own runner (what `parser upload` uses)."""
    from preservarium.examples import load_examples, run_examples

    loaded = load_examples((PARSERS / f"{name}.examples.yaml").read_text(encoding="utf-8"))
    results = await run_examples(client, source(name), loaded, device_type)
    failed = [f"{r.description}: {r.mismatch}" for r in results if not r.ok]
    assert not failed, "\n".join(failed)
    return len(results)
