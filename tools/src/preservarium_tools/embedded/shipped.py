"""The parsers shipped in `examples/parsers/`: finding them and publishing what changed.

Each `TYPE.py` there is the parser of device type TYPE; `TYPE.examples.yaml`, when present,
is stored with it. Each is published through the same use case as `parser upload` and the
HTTP API (`preservarium.usecases.parsers.publish_version`): checked, its examples run in
the sandbox, and stored (and activated) as a new version only when no stored version of
its type has the same source and examples. Restarting `preservarium up` neither piles up
versions nor, while the files are unchanged, overrides the version an operator activated
by hand. A parser the checks refuse is left out, with the reason, and the stack starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from preservarium.errors import InvalidParserSourceError
from preservarium.examples import ExamplesError
from preservarium.ids import is_device_type
from preservarium.parser_source import validate_source
from preservarium.sandbox_client import SandboxClient
from preservarium.usecases.parsers import (
    ExamplesFailedError,
    ScriptRefusedError,
    publish_version,
)
from sqlalchemy.ext.asyncio import AsyncEngine

PARSERS_SUBDIR = Path("examples") / "parsers"
UPLOADER = "preservarium up"


@dataclass(frozen=True, slots=True)
class ShippedParser:
    """One parser file, read and checked."""

    device_type: str
    path: Path
    source: str
    examples: str | None


@dataclass(frozen=True, slots=True)
class ParserState:
    """What `up` did with one shipped parser."""

    device_type: str
    version: int
    uploaded: bool
    active: bool


@dataclass(frozen=True, slots=True)
class RefusedParser:
    """A shipped file that is not a valid parser: left alone, with the reason."""

    path: Path
    reason: str


def candidates(start: Path, package_file: Path) -> list[Path]:
    """Where shipped parsers may be: `start` and its parents, then the source checkout."""
    places = [folder / PARSERS_SUBDIR for folder in (start, *start.parents)]
    # An editable install (the workspace's .venv) runs this file from tools/src/, in the checkout.
    places += [folder / PARSERS_SUBDIR for folder in package_file.parents]
    return list(dict.fromkeys(places))


def find_parsers_dir(places: Iterable[Path]) -> Path | None:
    """The first of `places` that holds at least one parser file."""
    for place in places:
        if place.is_dir() and any(place.glob("*.py")):
            return place
    return None


def read_parsers(directory: Path) -> tuple[list[ShippedParser], list[RefusedParser]]:
    """Every `TYPE.py` of `directory`, by name, and the files that cannot be parsers."""
    parsers: list[ShippedParser] = []
    refused: list[RefusedParser] = []
    for path in sorted(directory.glob("*.py")):
        try:
            parsers.append(_read(path))
        except (InvalidParserSourceError, OSError, ValueError) as exc:
            refused.append(RefusedParser(path, str(exc)))
    return parsers, refused


def _read(path: Path) -> ShippedParser:
    device_type = path.stem
    if not is_device_type(device_type):
        raise ValueError(f"{path.name} does not name a valid device type")
    examples_path = path.with_name(f"{device_type}.examples.yaml")
    examples = examples_path.read_text(encoding="utf-8") if examples_path.is_file() else None
    return ShippedParser(device_type, path, validate_source(path.read_bytes()), examples)


async def publish_shipped(
    engine: AsyncEngine, sandbox: SandboxClient, parsers: Sequence[ShippedParser]
) -> tuple[list[ParserState], list[RefusedParser]]:
    """Publish each parser (see the module's docstring): what each became, and those the
    checks refused. SandboxUnavailableError and RepositoryError stop it."""
    states: list[ParserState] = []
    refused: list[RefusedParser] = []
    for parser in parsers:
        try:
            stored = await publish_version(
                engine, sandbox, parser.device_type, parser.source.encode("utf-8"),
                parser.examples, uploaded_by=UPLOADER, keep_unchanged=True,
            )  # fmt: skip
        except ExamplesFailedError as exc:
            refused.append(RefusedParser(parser.path, _failed_examples(exc)))
        except (InvalidParserSourceError, ExamplesError, ScriptRefusedError) as exc:
            refused.append(RefusedParser(parser.path, str(exc)))
        else:
            record = stored.record
            states.append(
                ParserState(parser.device_type, record.version, stored.created, record.active)
            )
    return states, refused


def _failed_examples(exc: ExamplesFailedError) -> str:
    """`2 of 5 examples failed; ...: #3 (description) mismatch; ...`."""
    failed = [
        f"#{result.index} ({result.description}) {result.mismatch}"
        for result in exc.results
        if not result.ok
    ]
    return f"{exc}: " + "; ".join(failed)


def describe_parser(state: ParserState) -> str:
    """`efento v3 (uploaded)` or `efento v2 (unchanged)`."""
    what = "uploaded" if state.uploaded else "unchanged"
    inactive = "" if state.active else ", not active"
    return f"{state.device_type} v{state.version} ({what}{inactive})"
