"""The operator API as an ASGI app: `create_app(context)`.

Routes live under /api/v1 (see routes/); /healthz needs no token. The web console, when
its package is installed, mounts itself through `preservarium_gateway.console.mount(app)`.
"""

from __future__ import annotations

import importlib
import logging

from fastapi import Depends, FastAPI
from preservarium import __version__
from preservarium.repositories import SQLAuditRepository
from preservarium.supervisor import Supervisor

from preservarium_gateway.api import docs, params, problems
from preservarium_gateway.api.bodies import BoundedBodies
from preservarium_gateway.api.context import ApiContext
from preservarium_gateway.api.headers import SecurityHeaders
from preservarium_gateway.api.observe import ObservedRequests
from preservarium_gateway.api.replay_runs import replay_runs
from preservarium_gateway.api.routes import (
    audit,
    commands,
    devices,
    health,
    parsers,
    replays,
    streams,
    token,
)
from preservarium_gateway.api.templates import RouteTemplates

log = logging.getLogger("preservarium.gateway.api")
CONSOLE_MODULE = "preservarium_gateway.console"
IMPORT_PATH = "/api/v1/devices/import"
DESCRIPTION = (
    "Register devices, publish parsers, send commands and watch traffic. Every route but "
    "/healthz needs `Authorization: Bearer TOKEN` (`preservarium token create NAME --scope "
    "read|write|admin`). Errors are RFC 9457 problem documents."
)


def create_app(context: ApiContext, *, console: bool = True) -> FastAPI:
    """The API on `context`; with `console`, the web console too when it is installed."""
    app = FastAPI(
        title="Preservarium operator API",
        version=__version__,
        description=DESCRIPTION,
        openapi_url=docs.OPENAPI_URL,
        docs_url=None,
        redoc_url=None,
        dependencies=[Depends(params.no_nul_characters)],
    )
    app.state.context = context
    app.state.stream_slots = streams.StreamSlots(context.limits.streams_max)
    app.state.replay_runs = context.replay_runs or replay_runs(
        engine=context.engine, sandbox=context.sandbox, bootstrap=context.kafka_bootstrap,
        topics=context.topics, metrics=context.metrics, supervisor=Supervisor(),
        max_running=context.limits.replays_max,
    )  # fmt: skip
    problems.install(app)
    docs.install(app)
    app.include_router(health.router)
    for module in (devices, parsers, commands, replays, streams, audit, token):
        app.include_router(module.router, prefix="/api/v1")
    limits = context.limits
    app.add_middleware(BoundedBodies, default_max=limits.body_max_bytes,
                       larger={IMPORT_PATH: limits.import_max_bytes})  # fmt: skip
    templates = RouteTemplates(lambda: [*app.openapi()["paths"], *docs.PATHS])
    app.add_middleware(
        ObservedRequests, metrics=context.metrics, audit=SQLAuditRepository(context.engine),
        templates=templates,
    )  # fmt: skip
    app.add_middleware(SecurityHeaders)
    if console:
        mount_console(app)
    return app


def mount_console(app: FastAPI) -> bool:
    """Let the console package mount itself, if it is there; True when it did."""
    try:
        module = importlib.import_module(CONSOLE_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != CONSOLE_MODULE:
            raise
        return False
    mount = getattr(module, "mount", None)
    if not callable(mount):
        log.warning("the console package has no mount(app); not mounted")
        return False
    mount(app)
    return True
