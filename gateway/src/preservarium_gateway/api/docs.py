"""Interactive docs at /api/docs that work offline: Swagger UI's assets come from the
pinned `swagger-ui-bundle-v2` package (Swagger UI 5, which reads OpenAPI 3.1), served
here, never from a CDN. The page runs under a policy that allows its one inline script
by hash."""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from preservarium_gateway.api.headers import POLICY

# A <script> element with no src attribute, and its text.
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
OPENAPI_URL = "/api/openapi.json"
DOCS_URL = "/api/docs"
ASSETS = "/api/docs/assets"
# Served here but not in the OpenAPI document: the metrics label them by these templates.
PATHS = (OPENAPI_URL, DOCS_URL, ASSETS + "/{asset}")


def install(app: FastAPI) -> None:
    """Serve the docs page and its assets."""
    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    page = get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title=f"{app.title}: API docs",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        swagger_ui_parameters={"persistAuthorization": True},
    )
    headers = {"Content-Security-Policy": page_policy(bytes(page.body).decode())}

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs_page() -> HTMLResponse:
        return HTMLResponse(page.body, headers=headers)


def page_policy(html: str) -> str:
    """The docs page's policy: the default one, plus exactly the page's own inline
    scripts by their SHA-256 (Swagger UI is started by one), and inline styles, which
    Swagger UI's widgets set."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in INLINE_SCRIPT.findall(html)
    )
    return f"{POLICY}; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'"
