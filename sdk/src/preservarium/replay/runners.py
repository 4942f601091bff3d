"""Who parses a replayed uplink: a stored version (the batched ParseStream path that live
traffic takes), or an unsaved source (TestParser, for `parser upload --check-against`)."""

from __future__ import annotations

from typing import Any, Protocol

from preservarium.replay.errors import SANDBOX_UNAVAILABLE, ReplayError
from preservarium.replay.outcomes import Answer, answer_of
from preservarium.sandbox_client import (
    ContactInput,
    SandboxClient,
    SandboxRequestError,
    SandboxUnavailableError,
)


class Runner(Protocol):
    """Runs one contact through a parser; ReplayError (sandbox_unavailable) when the
    sandbox cannot answer, so that the replay stops instead of publishing failures."""

    parser: dict[str, Any]

    async def run(self, contact: ContactInput, *, identify: bool) -> Answer:
        """The parser's answer for `contact`."""


def _unavailable(exc: Exception) -> ReplayError:
    return ReplayError(f"{exc}", kind=SANDBOX_UNAVAILABLE)


class VersionRunner:
    """A stored version of the device type, over the client's parse streams."""

    def __init__(self, client: SandboxClient, *, device_type: str, version: int) -> None:
        self._client = client
        self._version = version
        self.parser: dict[str, Any] = {"name": device_type, "version": version}

    async def run(self, contact: ContactInput, *, identify: bool) -> Answer:
        """Parse with the pinned version."""
        try:
            response = await self._client.parse(contact, identify=identify, version=self._version)
        except SandboxRequestError as exc:  # this contact alone is refused: its failure
            return Answer(contact.device_id, error={
                "kind": "sandbox_unavailable", "message": str(exc), "line": None})  # fmt: skip
        except SandboxUnavailableError as exc:
            raise _unavailable(exc) from exc
        return answer_of(response, contact.device_id)


class SourceRunner:
    """An unsaved source, run the way Parse would run it (the sandbox's trial lane)."""

    def __init__(self, client: SandboxClient, *, device_type: str, source: str) -> None:
        self._client = client
        self._source = source
        self.parser: dict[str, Any] = {"name": device_type, "version": None}

    async def run(self, contact: ContactInput, *, identify: bool) -> Answer:
        """Parse with the unsaved source."""
        try:
            response = await self._client.test_parser(
                self._source, contact=contact, identify=identify
            )
        except (SandboxUnavailableError, SandboxRequestError) as exc:
            raise _unavailable(exc) from exc
        return answer_of(response, contact.device_id)
