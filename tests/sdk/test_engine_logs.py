"""A connection whose task was cancelled cannot be reset: that is not worth an error."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from preservarium.db.engine import make_engine


def failure(exc: BaseException) -> tuple[type[BaseException], BaseException, None]:
    return type(exc), exc, None


async def test_a_cancelled_reset_is_dropped_and_other_reset_failures_stay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    again = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'y.db'}")  # one filter per logger
    try:
        logger = engine.sync_engine.pool.logger
        with caplog.at_level(logging.ERROR):
            logger.error("Exception during reset or similar",
                         exc_info=failure(asyncio.CancelledError()))  # fmt: skip
            logger.error("Exception during reset or similar",
                         exc_info=failure(ConnectionResetError("gone")))  # fmt: skip
        kept = [r for r in caplog.records if r.name == getattr(logger, "name", None)]
        assert [type(r.exc_info[1]) for r in kept if r.exc_info] == [ConnectionResetError]
        assert isinstance(logger, logging.Logger)  # no echo: a plain logger
        assert len(logger.filters) == 1
    finally:
        await engine.dispose()
        await again.dispose()
