"""Headless Chromium for the console's tests, driven through Debian's chromedriver.

The pages talk to a server on the test's own event loop, so every WebDriver call (a
blocking HTTP call to chromedriver) runs in a worker thread: the loop keeps serving
while the browser waits.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Generous: a loaded machine renders slowly, and a wait ends as soon as its condition holds.
WAIT_S = 30.0
WINDOW = (1280, 900)


def start_chromium() -> WebDriver:
    """Headless Chromium through the system chromedriver; selenium-manager never runs
    (the driver's path is given), so nothing is downloaded."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: install the Debian packages chromium and "
            "chromium-driver (scripts/system-deps does)",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in containers, where the setuid sandbox cannot
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(argument)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=os.devnull)
    return webdriver.Chrome(service=service, options=options)


class Browser:
    """One Chromium, with awaitable helpers that wait for conditions, never for time."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver
        self.base_url = ""

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)` in a worker thread."""
        return await asyncio.to_thread(call, *args)

    async def open(self, path: str) -> None:
        """Loads a page of the server under test."""
        await self.run(self.driver.get, self.base_url + path)

    async def wait(
        self, condition: Callable[[WebDriver], T | None], *, timeout_s: float = WAIT_S
    ) -> T:
        """The first truthy value of `condition(driver)`, polled until `timeout_s`."""

        def until() -> T:
            wait = WebDriverWait(
                self.driver, timeout_s, poll_frequency=0.1,
                ignored_exceptions=(StaleElementReferenceException,),
            )  # fmt: skip
            found = wait.until(condition)
            assert found is not None  # until() returns only a truthy value
            return found

        return await self.run(until)

    async def element(self, css: str, *, timeout_s: float = WAIT_S) -> WebElement:
        """The first visible element matching `css`, once there is one."""

        def visible(driver: WebDriver) -> WebElement | None:
            for found in driver.find_elements(By.CSS_SELECTOR, css):
                if found.is_displayed():
                    return found
            return None

        return await self.wait(visible, timeout_s=timeout_s)

    async def text_of(self, css: str, contains: str, *, timeout_s: float = WAIT_S) -> str:
        """The text of the first element matching `css` once it contains `contains`."""

        def has_text(driver: WebDriver) -> str | None:
            for found in driver.find_elements(By.CSS_SELECTOR, css):
                if contains in found.text:
                    return str(found.text)
            return None

        try:
            return await self.wait(has_text, timeout_s=timeout_s)
        except TimeoutException:
            texts = await self.run(
                lambda: [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, css)]
            )
            raise AssertionError(
                f"no {css} contains {contains!r} in {timeout_s} s: {texts}"
            ) from None

    async def click(self, css: str) -> None:
        """Clicks the first visible element matching `css`."""
        found = await self.element(css)
        await self.run(found.click)

    async def type(self, css: str, text: str, *, clear: bool = True) -> None:
        """Types into the first visible field matching `css`."""
        found = await self.element(css)
        if clear:
            await self.run(found.clear)
        await self.run(found.send_keys, text)

    async def set_value(self, css: str, text: str) -> None:
        """Sets a field's value at once and fires `input` (for long text like a source)."""
        await self.element(css)
        script = (
            "const node = document.querySelector(arguments[0]); node.value = arguments[1];"
            "node.dispatchEvent(new Event('input', {bubbles: true}));"
        )
        await self.run(self.driver.execute_script, script, css, text)

    async def script(self, source: str, *args: Any) -> Any:
        """Runs `source` in the page and returns its value."""
        return await self.run(self.driver.execute_script, source, *args)

    async def path(self) -> str:
        """The current page's path and query."""
        url = await self.run(lambda: str(self.driver.current_url))
        return url.removeprefix(self.base_url)

    async def screenshot(self, target: Path) -> None:
        """A PNG of the whole page from its top, however far it is scrolled (Chromium's
        DevTools capture beyond the viewport)."""

        def shoot() -> None:
            metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
            size = metrics["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
            shot = self.driver.execute_cdp_cmd(
                "Page.captureScreenshot",
                {"format": "png", "captureBeyondViewport": True, "clip": clip},
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(base64.b64decode(shot["data"]))

        await self.run(shoot)

    async def close(self) -> None:
        """Quits Chromium and its driver."""
        await self.run(self.driver.quit)
