"""Who parses a replayed uplink: a stored version (the batched ParseStream path that live
traffic takes), or an unsaved source (TestParser, for `parser upload --check-against`)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from preservarium.contract.contact import Contact
from preservarium.contract.kinds import ErrorKind
from preservarium.contract.uplinks import error_object
from preservarium.replay.errors import QUARANTINED, SANDBOX_UNAVAILABLE, ReplayError
from preservarium.replay.outcomes import Answer, answer_of
from preservarium.sandbox_answers import ParseAnswer
from preservarium.sandbox_client import (
    SandboxClient,
    SandboxRequestError,
    SandboxUnavailableError,
)


class Runner(Protocol):
    """Runs one contact through a parser; ReplayError (sandbox_unavailable) when the
    sandbox cannot answer, so that the replay stops instead of publishing failures."""

    parser: dict[str, Any]

    async def run(self, contact: Contact, *, identify: bool) -> Answer:
        """The parser's answer for `contact`."""


def _unavailable(exc: Exception) -> ReplayError:
    return ReplayError(f"{exc}", kind=SANDBOX_UNAVAILABLE)


def _answer(response: ParseAnswer, contact: Contact) -> Answer:
    """The parser's answer; ReplayError when the answer says the sandbox could not run
    the parser at all (no worker in time, or the version is quarantined): published,
    such a failure would say the uplink failed when the parser never saw it."""
    answer = answer_of(response, contact.device_id)
    kind = None if answer.error is None else answer.error["kind"]
    if kind == SANDBOX_UNAVAILABLE:
        raise ReplayError(f"sandbox: {answer.error and answer.error['message']}", kind=kind)
    if kind == QUARANTINED:
        raise ReplayError(
            f"the parser version is quarantined (it keeps timing out or running out of "
            f"memory): {answer.error and answer.error['message']}",
            kind=QUARANTINED,
        )
    return answer


class VersionRunner:
    """A stored version of the device type, over the client's parse streams, as
    background calls: the sandbox serves them only when no device's contact waits."""

    def __init__(self, client: SandboxClient, *, device_type: str, version: int) -> None:
        self._client = client
        self._version = version
        self.parser: dict[str, Any] = {"name": device_type, "version": version}

    async def run(self, contact: Contact, *, identify: bool) -> Answer:
        """Parse with the pinned version."""
        try:
            response = await self._client.parse(
                contact, identify=identify, version=self._version, background=True
            )
        except SandboxRequestError as exc:  # this contact alone is refused: its failure
            failure = error_object(ErrorKind.SANDBOX_UNAVAILABLE, str(exc), None)
            return Answer(contact.device_id, error=failure)
        except SandboxUnavailableError as exc:
            raise _unavailable(exc) from exc
        return _answer(response, contact)


class SourceRunner:
    """An unsaved source, run the way Parse would run it, on the sandbox's trial lane:
    one call at a time (the lane runs one, and answers a call that waited over 2 s for
    its turn `sandbox_unavailable`)."""

    def __init__(self, client: SandboxClient, *, device_type: str, source: str) -> None:
        self._client = client
        self._source = source
        self._turn = asyncio.Lock()
        self.parser: dict[str, Any] = {"name": device_type, "version": None}

    async def run(self, contact: Contact, *, identify: bool) -> Answer:
        """Parse with the unsaved source."""
        try:
            async with self._turn:
                trial = await self._client.test_parser(
                    self._source, contact=contact, identify=identify
                )
        except (SandboxUnavailableError, SandboxRequestError) as exc:
            raise _unavailable(exc) from exc
        return _answer(trial.answer, contact)
