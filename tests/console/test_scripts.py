"""The console's scripts in Chromium, against the console alone (no API behind it), under
the API's security headers: the highlighter, the diff, the sign-in redirect, the
read-only view, and the offline API docs page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from preservarium_gateway.api import docs
from preservarium_gateway.api.headers import SecurityHeaders
from preservarium_gateway.console import mount

from tests.console.browser import Browser
from tests.console.server import serving

SOURCE = """import struct

@helper
def parse(payload, metadata):
    # a <comment> & more
    (raw,) = struct.unpack(">h", payload[4:6])
    return {"temperature": raw / 10, "hex": 0x1F, "ok": True}
"""


@pytest.fixture(scope="module")
async def console(browser: Browser) -> AsyncIterator[Browser]:
    app = FastAPI(
        title="Console alone", openapi_url=docs.OPENAPI_URL, docs_url=None, redoc_url=None
    )
    docs.install(app)
    mount(app)
    app.add_middleware(SecurityHeaders)
    async with serving(app) as url:
        browser.base_url = url
        await browser.open("/signin")
        yield browser


async def module_call(browser: Browser, module: str, expression: str, *args: Any) -> Any:
    """`expression` evaluated with the console module `m` imported, given `args`."""
    script = (
        "const done = arguments[arguments.length - 1];"
        f"import('/console/assets/{module}').then((m) => done(({expression})(m, ...arguments)))"
        ".catch((e) => done('error: ' + e));"
    )
    return await console_run(browser, script, *args)


async def console_run(browser: Browser, script: str, *args: Any) -> Any:
    return await browser.run(browser.driver.execute_async_script, script, *args)


async def test_the_highlighter_colours_python_and_keeps_the_text(console: Browser) -> None:
    html = await module_call(console, "highlight.js", "(m, src) => m.highlight(src)", SOURCE)
    assert '<span class="tok-kw">import</span>' in html
    assert '<span class="tok-kw">def</span> <span class="tok-fn">parse</span>' in html
    assert '<span class="tok-str">"&gt;h"</span>' in html
    assert '<span class="tok-com"># a &lt;comment&gt; &amp; more</span>' in html
    assert '<span class="tok-num">0x1F</span>' in html
    assert '<span class="tok-dec">@helper</span>' in html
    text = await console_run(
        console,
        "const done = arguments[1]; const box = document.createElement('pre');"
        "import('/console/assets/highlight.js').then((m) => {"
        " box.innerHTML = m.highlight(arguments[0]); done(box.textContent); });",
        SOURCE,
    )
    assert text == SOURCE + "\n"


async def test_an_unterminated_string_is_highlighted_to_the_end_of_its_line(
    console: Browser,
) -> None:
    html = await module_call(console, "highlight.js", "(m, s) => m.highlight(s)", 'x = "abc\ny = 1')
    assert '<span class="tok-str">"abc</span>' in html
    assert '<span class="tok-num">1</span>' in html


async def test_the_diff_lists_removed_and_added_lines_between_common_ones(
    console: Browser,
) -> None:
    ops = await module_call(
        console, "diff.js", "(m, a, b) => m.diffLines(a, b)", "a\nb\nc\nd", "a\nc\nd\ne"
    )
    assert [(o["op"], o["text"]) for o in ops] == [
        (" ", "a"), ("-", "b"), (" ", "c"), (" ", "d"), ("+", "e"),
    ]  # fmt: skip
    changed = await module_call(
        console, "diff.js", "(m, a, b) => m.diffLines(a, b)", "x\nold\ny", "x\nnew\ny"
    )
    # A changed line reads as a unified diff does: the old line, then the new one.
    assert [(o["op"], o["text"]) for o in changed] == [
        (" ", "x"), ("-", "old"), ("+", "new"), (" ", "y"),
    ]  # fmt: skip


async def test_a_page_without_a_token_sends_the_operator_to_sign_in(console: Browser) -> None:
    await console.script("sessionStorage.clear()")
    await console.open("/parsers/thermo")
    await console.element("#signin-form")
    assert await console.path() == "/signin?next=%2Fparsers%2Fthermo"


async def test_a_read_only_token_sees_write_actions_disabled(console: Browser) -> None:
    await console.script(
        "sessionStorage.setItem('preservarium.token', 'pvr_x');"
        "sessionStorage.setItem('preservarium.scope', 'read');"
        "sessionStorage.setItem('preservarium.token_name', 'viewer');"
    )
    await console.open("/devices/dev-1")
    note = await console.element("[data-write-note]")
    assert "read-only" in await console.run(lambda: note.text)
    send = await console.element("#send")
    assert not await console.run(send.is_enabled)
    assert "viewer" in await console.text_of("#who", "viewer")


async def test_the_docs_page_runs_under_its_content_security_policy(console: Browser) -> None:
    # The page's one inline script is allowed by its hash alone; were the hash wrong,
    # Chromium would refuse it and Swagger UI would never draw the document's title.
    await console.open("/api/docs")
    assert "Console alone" in await console.text_of(".swagger-ui .info .title", "Console alone")
    await console.open("/signin")
