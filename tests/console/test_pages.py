"""The console's pages and assets as served: HTML with security headers, escaped values,
and nothing loaded from any host but the console's own."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser

import httpx
import pytest
from fastapi import FastAPI
from preservarium_gateway.console import mount
from preservarium_gateway.console.routes import assets_directory

PAGES = ["/", "/signin", "/devices/dev-1", "/parsers", "/parsers/thermo", "/live"]
# Any absolute URL or scheme-relative reference; an SVG's XML namespace is a name, not a load.
EXTERNAL = re.compile(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
NAMESPACE = 'xmlns="http://www.w3.org/2000/svg"'
JS_IMPORT = re.compile(r"""^import .* from "([^"]+)";$""", re.MULTILINE)


class References(HTMLParser):
    """Every src and href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [value for name, value in attrs if name in ("src", "href") and value]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    mount(app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as http:
        yield http


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.found


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_is_html_that_loads_only_its_own_assets(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert EXTERNAL.findall(response.text) == []
    for reference in references(response.text):
        assert reference.startswith("/") and not reference.startswith("//"), reference
        if reference.startswith("/console/assets/"):
            assert (await client.get(reference)).status_code == 200, reference


def test_no_asset_references_an_external_host() -> None:
    files = [path for path in assets_directory().iterdir() if path.is_file()]
    assert {path.suffix for path in files} >= {".js", ".css", ".svg"}
    for path in files:
        text = path.read_text("utf-8").replace(NAMESPACE, "")
        assert EXTERNAL.findall(text) == [], path.name


def test_every_script_import_is_a_file_of_the_package() -> None:
    directory = assets_directory()
    for script in directory.glob("*.js"):
        for target in JS_IMPORT.findall(script.read_text("utf-8")):
            assert target.startswith("./"), (script.name, target)
            assert (directory / target[2:]).is_file(), (script.name, target)


async def test_values_from_the_address_are_escaped(client: httpx.AsyncClient) -> None:
    response = await client.get('/devices/%3Cscript%3Ealert("x")')
    assert response.status_code == 200
    assert "<script>alert" not in response.text
    assert 'data-device="&lt;script&gt;alert(&quot;x&quot;)"' in response.text


async def test_the_navigation_marks_the_current_section(client: httpx.AsyncClient) -> None:
    page = (await client.get("/parsers/thermo")).text
    assert '<a href="/parsers" class="active" aria-current="page">' in page
    assert 'class="active"' not in (await client.get("/signin")).text


async def test_the_device_list_lives_at_the_root(client: httpx.AsyncClient) -> None:
    response = await client.get("/devices")
    assert response.status_code == 308
    assert response.headers["location"] == "/"
