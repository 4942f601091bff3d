"""Interactive docs at /api/docs that work offline: Swagger UI's assets come from the
pinned `swagger-ui-bundle` package, served here, never from a CDN."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

OPENAPI_URL = "/api/openapi.json"
DOCS_URL = "/api/docs"
ASSETS = "/api/docs/assets"
# Served here but not in the OpenAPI document: the metrics label them by these templates.
PATHS = (OPENAPI_URL, DOCS_URL, ASSETS + "/{asset}")


def install(app: FastAPI) -> None:
    """Serve the docs page and its assets."""
    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    @app.get(DOCS_URL, include_in_schema=False)
    async def docs_page() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=OPENAPI_URL,
            title=f"{app.title}: API docs",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )
