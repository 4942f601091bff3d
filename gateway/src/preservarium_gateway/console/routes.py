"""The console's routes on the API's application: pages and the package's static assets."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from preservarium_gateway.console import pages

# The pages call only their own origin; nothing is loaded from anywhere else, and no other
# site may frame them.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def page(html: str) -> HTMLResponse:
    """An HTML page with the console's security headers."""
    return HTMLResponse(html, headers=SECURITY_HEADERS)


router = APIRouter(include_in_schema=False)


@router.get("/")
async def devices_page() -> HTMLResponse:
    """The device list: the console's home."""
    return page(pages.render(pages.DEVICES))


@router.get("/signin")
async def sign_in_page() -> HTMLResponse:
    """Paste a token; it is checked, then kept in the tab's session storage."""
    return page(pages.render(pages.SIGN_IN))


@router.get("/devices")
async def devices_alias() -> RedirectResponse:
    """The device list lives at `/`."""
    return RedirectResponse("/", status_code=308)


@router.get("/devices/{device_id}")
async def device_page(device_id: str) -> HTMLResponse:
    """One device: facts, commands followed live, a send form."""
    return page(pages.render(pages.DEVICE, title=f"Device {device_id}", device=device_id))


@router.get("/parsers")
async def parsers_page() -> HTMLResponse:
    """Every device type's parser."""
    return page(pages.render(pages.PARSERS))


@router.get("/parsers/{device_type}")
async def parser_page(device_type: str) -> HTMLResponse:
    """One type's parser: versions, editor, tests, diff, upload and activate."""
    return page(pages.render(pages.PARSER, title=f"Parser {device_type}", type=device_type))


@router.get("/live")
async def live_page() -> HTMLResponse:
    """Raw, parsed and failed records as they arrive."""
    return page(pages.render(pages.LIVE))


def assets_directory() -> Path:
    """The package's static/ folder on disk (the package is installed as files)."""
    return Path(str(resources.files(__package__).joinpath("static")))


def mount(app: FastAPI) -> None:
    """Adds the console's pages and assets to the API's application."""
    app.include_router(router)
    app.mount(pages.ASSETS, StaticFiles(directory=assets_directory()), name="console-assets")
