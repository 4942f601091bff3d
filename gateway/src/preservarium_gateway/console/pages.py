"""The console's pages: HTML shells filled from templates in this package.

Each page is the same frame (top bar, navigation, one script); the data comes from the
operator API, called by the page's script with the token the browser keeps.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template

ASSETS = "/console/assets"
# Where the navigation points, and the page each entry marks as current.
NAVIGATION = (
    ("/", "devices", "Devices"),
    ("/parsers", "parsers", "Parsers"),
    ("/live", "live", "Live"),
)


@dataclass(frozen=True, slots=True)
class Page:
    """One page: its template, its script, its title and the section it belongs to."""

    template: str
    script: str
    title: str
    section: str


SIGN_IN = Page("signin.html", "signin.js", "Sign in", "")
DEVICES = Page("devices.html", "devices.js", "Devices", "devices")
DEVICE = Page("device.html", "device.js", "Device", "devices")
PARSERS = Page("parsers.html", "parsers.js", "Parsers", "parsers")
PARSER = Page("parser.html", "parser.js", "Parser", "parsers")
LIVE = Page("live.html", "live.js", "Live traffic", "live")


@cache
def template(name: str) -> Template:
    """A template of this package, read once."""
    text = resources.files(__package__).joinpath("templates", name).read_text("utf-8")
    return Template(text)


def navigation(section: str) -> str:
    """The top bar's links, the current section marked for the eye and for screen readers."""
    links = []
    for href, name, label in NAVIGATION:
        current = ' class="active" aria-current="page"' if name == section else ""
        links.append(f'<a href="{href}"{current}>{label}</a>')
    return "".join(links) if section else ""


def render(page: Page, *, title: str | None = None, **data: str) -> str:
    """The page's HTML; `data` becomes escaped placeholders and data-* attributes of <body>."""
    escaped = {key: html.escape(value, quote=True) for key, value in data.items()}
    body = template(page.template).safe_substitute(escaped)
    attributes = "".join(
        f' data-{key.replace("_", "-")}="{value}"' for key, value in escaped.items()
    )
    return template("base.html").substitute(
        title=html.escape(title or page.title),
        assets=ASSETS,
        page=page.section or "signin",
        data=attributes,
        nav=navigation(page.section),
        body=body,
        script=page.script,
    )
