"""One Chromium per module; a screenshot of the page under tests/artifacts/ when a test fails."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest

from tests.console.browser import Browser, start_chromium

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keeps each phase's report on the item, for fixtures to see whether the test failed."""
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium for the whole module (starting one costs seconds)."""
    driver = await asyncio.to_thread(start_chromium)
    opened = Browser(driver)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(autouse=True)
async def screenshot_on_failure(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After a failed test that used the browser, the page as the browser showed it:
    tests/artifacts/NAME.png."""
    yield
    reports = request.node.stash.get(REPORTS, {})
    if "browser" in request.fixturenames and any(r.failed for r in reports.values()):
        browser: Browser = request.getfixturevalue("browser")
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid.split("/")[-1])
        await browser.screenshot(ARTIFACTS / f"{name}.png")


class DocShots:
    """Screenshots for docs/images/, taken only when pytest runs with --console-screenshots."""

    def __init__(self, target: Path | None) -> None:
        self.target = target

    async def take(self, browser: Browser, name: str) -> None:
        """Writes NAME.png of the current page when screenshots were asked for."""
        if self.target is not None:
            await browser.screenshot(self.target / f"{name}.png")


@pytest.fixture(scope="module")
def doc_shots(request: pytest.FixtureRequest) -> DocShots:
    """Where the flow writes the documentation's screenshots, if anywhere."""
    target = request.config.getoption("console_screenshots")
    return DocShots(Path(target) if target else None)
