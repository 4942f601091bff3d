"""The parser catalog: device type -> active version and its source, kept warm.

One cheap query (types, versions, hashes; no sources) tells which version is active; a
source is fetched once per version and kept. On PostgreSQL the query runs as soon as an
activation is announced (LISTEN/NOTIFY), with a slow poll as a safety net; on SQLite, or
while the listener is down, it runs every refresh interval. The hot path is a dict
lookup: no query, no fetch, once warm.

A stored version that is not active (a replay through an older or newer version, a
check before activating) is fetched when first asked for and kept among the last few
asked for: a replay asks for the same one many times, and versions never change.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from preservarium.errors import NotFoundError
from preservarium.lifecycle import AsyncLifecycle
from preservarium.periodic import Periodic
from preservarium.repositories import ActiveParser, SQLParserRepository
from preservarium.repositories.parser_changes import ParserChanges
from preservarium.supervisor import Supervisor

from preservarium_sandbox.engine.errors import ScriptFailure
from preservarium_sandbox.limits import PINNED_VERSIONS

log = logging.getLogger("preservarium.sandbox.catalog")
# The poll while notifications arrive: only for one that got lost.
SAFETY_INTERVAL_S = 5.0


@dataclass(frozen=True, slots=True)
class ParserSource:
    """An active parser version with its source."""

    device_type: str
    version: int
    sha256: str
    source: str
    # What the static pre-scan refused, once per version: such a version never reaches
    # a live worker (it would cost one its whole compile budget per try).
    refusal: ScriptFailure | None = None


class ParserCatalog(AsyncLifecycle):
    """Active parser versions and their sources, refreshed in the background."""

    def __init__(
        self,
        repository: SQLParserRepository,
        *,
        refresh_interval_s: float = 0.5,
        on_lookup: Callable[[bool], None] | None = None,
        supervisor: Supervisor | None = None,
        scan: Callable[[str], ScriptFailure | None] | None = None,
    ) -> None:
        self._repository = repository
        self._scan = scan
        self._refusals: dict[str, ScriptFailure] = {}
        self._interval = refresh_interval_s
        self._on_lookup = on_lookup or (lambda hit: None)
        self._active: dict[str, ActiveParser] = {}
        self._sources: dict[str, str] = {}
        self._pinned: OrderedDict[tuple[str, int], ParserSource] = OrderedDict()
        self._refresher = Periodic(
            self.refresh, interval_s=refresh_interval_s, name="parser-catalog",
            supervisor=supervisor,
        )  # fmt: skip
        self.changes = ParserChanges(
            repository.engine, self._refresher.wake, on_listening=self._listening,
            supervisor=supervisor,
        )  # fmt: skip

    def _listening(self, listening: bool) -> None:
        self._refresher.interval_s = (
            max(self._interval, SAFETY_INTERVAL_S) if listening else self._interval
        )

    async def start(self) -> None:
        """Load every active version and its source, then keep refreshing."""
        await self.refresh()
        self._refresher.start()
        await self.changes.start()

    async def stop(self) -> None:
        """Stop refreshing; idempotent."""
        await self.changes.stop()
        await self._refresher.stop()

    async def refresh(self) -> None:
        """Read which versions are active; fetch the sources not seen yet."""
        active = await self._repository.active_parsers()
        for parser in active.values():
            if parser.sha256 not in self._sources:
                await self._fetch(parser)
        live = {parser.sha256 for parser in active.values()}
        if active != self._active:
            changed = {k: v.version for k, v in active.items() if self._active.get(k) != v}
            if changed:
                log.info("active parsers changed", extra={"versions": changed})
        self._active = active
        for sha in set(self._sources) - live:
            del self._sources[sha]
            self._refusals.pop(sha, None)

    async def _fetch(self, parser: ActiveParser) -> None:
        try:
            record = await self._repository.get_version(parser.device_type, parser.version)
        except NotFoundError:
            return
        if self._scan is not None:
            # In a thread: tokenizing a large source takes a while, live calls go on.
            refusal = await asyncio.to_thread(self._scan, record.source)
            if refusal is not None:
                self._refusals[record.sha256] = refusal
                log.warning(
                    "active parser refused by the pre-scan",
                    extra={"parser": parser.device_type, "version": parser.version},
                )
        self._sources[record.sha256] = record.source

    def lookup(self, device_type: str) -> ParserSource | None:
        """The active version of `device_type` with its source, or None. No I/O."""
        parser = self._active.get(device_type)
        source = None if parser is None else self._sources.get(parser.sha256)
        self._on_lookup(source is not None)
        if parser is None or source is None:
            return None
        return ParserSource(
            parser.device_type, parser.version, parser.sha256, source,
            self._refusals.get(parser.sha256),
        )  # fmt: skip

    async def version(self, device_type: str, version: int) -> ParserSource | None:
        """Stored version `version` of `device_type` with its source, or None when there
        is no such version. The active version costs no I/O; another one, a query the
        first time it is asked for."""
        active = self.lookup(device_type)
        if active is not None and active.version == version:
            return active
        key = (device_type, version)
        pinned = self._pinned.get(key)
        if pinned is None:
            try:
                record = await self._repository.get_version(device_type, version)
            except NotFoundError:
                return None
            refusal = (
                None if self._scan is None else await asyncio.to_thread(self._scan, record.source)
            )
            pinned = ParserSource(device_type, version, record.sha256, record.source, refusal)
            self._pinned[key] = pinned
            while len(self._pinned) > PINNED_VERSIONS:
                self._pinned.popitem(last=False)
        self._pinned.move_to_end(key)
        return pinned
