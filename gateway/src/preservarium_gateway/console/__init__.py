"""The web console: server-rendered page shells and their scripts, served on the API's
listener at `/`. Every asset is a file of this package: the console works offline.

`mount(app)` adds the pages and the assets to the API's FastAPI application.
"""

from __future__ import annotations

from preservarium_gateway.console.routes import mount

__all__ = ["mount"]
