"""`preservarium parser test` and the examples check of `parser upload`.

Both run an unsaved source in the sandbox service (TestParser). Exit codes: 0 ok,
1 a script error or a failing example, 2 a usage or infrastructure error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from preservarium.contract.contact import Contact
from preservarium.error_text import with_line, without_line
from preservarium.examples import (
    METHODS,
    Example,
    ExampleResult,
    ExamplesError,
    command_input,
    load_examples,
    run_examples,
)
from preservarium.ids import is_device_id, is_device_type
from preservarium.sandbox_answers import ScriptError, TrialAnswer
from preservarium.sandbox_client import (
    CommandInput,
    SandboxClient,
    SandboxRequestError,
    SandboxUnavailableError,
)
from preservarium.text import terminal_text
from preservarium.usecases import parsers as parsers_usecase
from rich.markup import escape

from preservarium_tools.cli.common import console, err_console, fail, print_json

T = TypeVar("T")
trial_report = parsers_usecase.trial_report
CALL_TIMEOUT_S = 10.0  # above the sandbox's own per-call ceiling (5 s) plus queueing
USAGE = 2


@dataclass(frozen=True, slots=True)
class Trial:
    """One `parser test` run: the contact to parse and/or the command to format."""

    contact: Contact | None
    identify: bool
    command: CommandInput | None


@dataclass(frozen=True, slots=True)
class TrialOptions:
    """The command-line options of `parser test` that describe a single run."""

    device_type: str
    path: str | None = None
    method: str | None = None
    non: bool = False
    payload_hex: str | None = None
    payload_file: Path | None = None
    command_json: str | None = None
    device_id: str | None = None
    attributes: tuple[str, ...] = ()

    def describes_a_run(self) -> bool:
        """True when any option besides the type was given (they conflict with --examples)."""
        given = (
            self.path,
            self.method,
            self.payload_hex,
            self.payload_file,
            self.command_json,
            self.device_id,
        )
        return self.non or bool(self.attributes) or any(value is not None for value in given)


def default_device_type(file: Path) -> str:
    """The device type a test run reports: the file's stem when it is a valid type."""
    return file.stem if is_device_type(file.stem) else "test"


def trial_from(options: TrialOptions) -> Trial:
    """Check the options (exit 2 on misuse) and describe the run.

    Without a payload but with --command only the command is formatted; with neither,
    an empty payload is parsed.
    """
    if not is_device_type(options.device_type):
        fail(f"invalid --type {options.device_type!r}: use 1 to 64 of A-Z a-z 0-9 . _ -", USAGE)
    if options.device_id is not None and not is_device_id(options.device_id):
        fail(
            f"invalid --device-id {options.device_id!r}: use 1 to 64 of A-Z a-z 0-9 . _ : -", USAGE
        )
    method = (options.method or "POST").upper()
    if method not in METHODS:
        fail(f"invalid --method {options.method!r}: use one of {', '.join(METHODS)}", USAGE)
    payload = _payload(options.payload_hex, options.payload_file)
    attributes = _attributes(options)
    command = _command(options.command_json, options.device_id)
    if command is not None and attributes and not command.attributes_json:
        command = dataclasses.replace(command, attributes_json=attributes)
    contact = None
    if payload is not None or command is None:
        contact = Contact(
            payload=payload or b"",
            device_type=options.device_type,
            device_id=options.device_id,
            path=options.path or "",
            method=method,
            confirmable=not options.non,
            received_at=datetime.now(UTC),
            attributes_json=attributes,
        )
    return Trial(contact=contact, identify=options.device_id is None, command=command)


def run_trial(address: str, source: str, trial: Trial, *, as_json: bool) -> None:
    """Run one trial in the sandbox, print the outcome, exit 1 on a script error."""

    async def call(client: SandboxClient) -> TrialAnswer:
        return await client.test_parser(
            source, contact=trial.contact, identify=trial.identify, command=trial.command
        )

    outcome = trial_report(with_sandbox(address, call))
    if as_json:
        print_json(outcome)
    else:
        _print_report(outcome)
    if not outcome["ok"]:
        raise SystemExit(1)


def read_examples(path: Path) -> tuple[str, list[Example]]:
    """The examples file's text and its examples; exit 2 naming the problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", USAGE)
    except UnicodeDecodeError:
        fail(f"{path}: not UTF-8", USAGE)
    try:
        return text, load_examples(text)
    except ExamplesError as exc:
        fail(f"{path}: {exc}", USAGE)


def run_example_file(
    address: str, source: str, examples: Sequence[Example], device_type: str, *, as_json: bool
) -> None:
    """`parser test --examples`: print every result; exit 1 when one does not match."""
    results = _results(address, source, examples, device_type)
    if as_json:
        print_json([parsers_usecase.example_json(r) for r in results])
    else:
        for result in results:
            _print_example(result, console.print)
        passed = sum(result.ok for result in results)
        console.print(f"{len(results)} examples: {passed} passed, {len(results) - passed} failed")
    if not all(result.ok for result in results):
        raise SystemExit(1)


def check_examples(
    address: str, source: str, examples: Sequence[Example], device_type: str
) -> None:
    """`parser upload --examples`: exit 1 printing each mismatch unless every example passes."""
    results = _results(address, source, examples, device_type)
    failed = [result for result in results if not result.ok]
    for result in failed:
        _print_example(result, err_console.print)
    if failed:
        fail(f"{len(failed)} of {len(results)} examples failed; version not stored")
    err_console.print(f"{len(results)} examples passed", highlight=False)


def check_compiles(address: str, source: str, *, force: bool) -> None:
    """`parser upload`: compile in the sandbox; exit 1 when it refuses the source.

    The local checks (size, UTF-8, syntax, imports, a parse function) already passed;
    what only the sandbox knows is RestrictedPython's verdict. A sandbox that cannot be
    reached leaves the source unchecked: exit 2, unless `force` (then a warning).
    """

    async def body() -> TrialAnswer:
        async with SandboxClient(address, timeout_s=CALL_TIMEOUT_S) as client:
            return await client.test_parser(source)

    try:
        trial = asyncio.run(body())
    except (SandboxUnavailableError, SandboxRequestError) as exc:
        reason = " ".join(str(exc).split())
        if not force:
            fail(
                f"cannot check the parser: {reason}; start the sandbox "
                "(preservarium up), or pass --force to store it unchecked",
                USAGE,
            )
        err_console.print(f"warning: not checked in the sandbox ({escape(reason)})", soft_wrap=True)
        return
    if trial.answer.error is not None:
        fail(f"{script_error(trial.answer.error)}; version not stored")


def script_error(error: ScriptError) -> str:
    """`kind at line N: message`, naming the line once even when the message does too."""
    return with_line(error.kind, error.message, error.line)


def with_sandbox(address: str, work: Callable[[SandboxClient], Awaitable[T]]) -> T:
    """Run `work` with a client of the sandbox at `address`; exit 2 when it cannot."""

    async def body() -> T:
        async with SandboxClient(address, timeout_s=CALL_TIMEOUT_S) as client:
            return await work(client)

    try:
        return asyncio.run(body())
    except (SandboxUnavailableError, SandboxRequestError) as exc:
        fail(" ".join(str(exc).split()), USAGE)


def _results(
    address: str, source: str, examples: Sequence[Example], device_type: str
) -> list[ExampleResult]:
    return with_sandbox(address, lambda client: run_examples(client, source, examples, device_type))


def _payload(payload_hex: str | None, payload_file: Path | None) -> bytes | None:
    if payload_hex is not None and payload_file is not None:
        fail("use --payload-hex or --payload-file, not both", USAGE)
    if payload_hex is not None:
        try:
            return bytes.fromhex(payload_hex)
        except ValueError:
            fail(f"--payload-hex is not hex: {payload_hex!r}", USAGE)
    if payload_file is not None:
        try:
            return payload_file.read_bytes()
        except OSError as exc:
            fail(f"cannot read {payload_file}: {exc.strerror}", USAGE)
    return None


def _attributes(options: TrialOptions) -> str:
    """--attr as the attributes' JSON text ("" for none); only with --device-id, as on a
    route the gateway gives identify() no attributes."""
    from preservarium.attributes import (
        InvalidAttributesError,
        checked_attributes,
        encode_attributes,
    )

    from preservarium_tools.cli.device_credentials import parse_attributes

    if not options.attributes:
        return ""
    if options.device_id is None:
        fail("--attr needs --device-id: on a route the device is not known before identify()",
             USAGE)  # fmt: skip
    try:
        return encode_attributes(checked_attributes(parse_attributes(list(options.attributes))))
    except InvalidAttributesError as exc:
        fail(f"--attr: {exc}", USAGE)


def _command(text: str | None, device_id: str | None) -> CommandInput | None:
    if text is None:
        return None
    try:
        spec = json.loads(text)
    except ValueError as exc:
        fail(f"--command is not JSON: {exc}", USAGE)
    try:
        return command_input(spec, device_id=device_id)
    except ExamplesError as exc:
        fail(f"--command: {exc}", USAGE)


def _print_printed(text: str) -> None:
    """What the parser print()ed, each line marked as its output (escaped: the parser
    chose these characters)."""
    if not text:
        return
    console.print("printed", style="dim", highlight=False)
    for line in text.removesuffix("\n").split("\n"):
        console.print(f"  | {terminal_text(line)}", highlight=False, markup=False)


def _print_report(outcome: dict[str, Any]) -> None:
    _print_printed(outcome.get("printed", ""))
    if not outcome["ok"]:
        error = outcome["error"]
        message = error["message"]
        line = ""
        if error["line"] is not None:
            line, message = f" at line {error['line']}", without_line(message, error["line"])
        console.print(f"[bold red]{error['kind']}[/]{line}", highlight=False)
        console.print(message, highlight=False, markup=False)
        return
    console.print(f"[bold green]ok[/] in {outcome['duration_ms']:.1f} ms", highlight=False)
    for label, key in (
        ("device id", "device_id"),
        ("reply", "reply_hex"),
        ("command", "command_hex"),
    ):
        if outcome[key] is not None:
            console.print(f"{label:<10} {outcome[key]}", highlight=False, markup=False)
    for warning in outcome["warnings"]:
        console.print(f"warning    {warning}", highlight=False, markup=False)
    if outcome["data"] is not None:
        console.print_json(data=outcome["data"])


def _print_example(result: ExampleResult, show: Callable[..., None]) -> None:
    mark = "[green]ok[/]  " if result.ok else "[bold red]FAIL[/]"
    show(f"{mark} example {result.index}: {escape(result.description)}", highlight=False)
    for mismatch in result.mismatches:
        show(f"       {mismatch}", highlight=False, markup=False)
