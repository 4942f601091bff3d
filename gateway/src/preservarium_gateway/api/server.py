"""The API's HTTP listener: uvicorn on the gateway's own event loop, as a supervised task.

uvicorn's signal handling is off (the gateway owns SIGTERM/SIGINT); its socket is bound
here first, so that a port in use is a clear start error, not a SystemExit in a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator

import uvicorn
from preservarium.lifecycle import AsyncLifecycle
from preservarium.settings import HostPort
from preservarium.supervisor import Supervisor
from starlette.types import ASGIApp

from preservarium_gateway.errors import GatewayStartError

log = logging.getLogger("preservarium.gateway.api")
SHUTDOWN_TIMEOUT_S = 2.0
BACKLOG = 128


class _GatewayOwnedServer(uvicorn.Server):
    """uvicorn without signal handlers of its own."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(address: HostPort) -> socket.socket:
    """A listening TCP socket on `address`; GatewayStartError when it cannot be had."""
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
        family, kind, proto, _, where = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise GatewayStartError(f"cannot listen on {address} (api): {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise GatewayStartError(
            f"cannot listen on {address} (api, PRESERVARIUM_API_LISTEN): {exc.strerror}"
        ) from exc
    return sock


class ApiServer(AsyncLifecycle):
    """Serves an ASGI app on one address until stopped; restarted by the supervisor if
    uvicorn fails."""

    def __init__(self, *, app: ASGIApp, listen: HostPort, supervisor: Supervisor) -> None:
        self._app = app
        self._listen = listen
        self._supervisor = supervisor
        self._socket: socket.socket | None = None
        self._server: _GatewayOwnedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.port: int | None = None

    def open(self) -> None:
        """Bind now (GatewayStartError if the port is taken), to fail before anything else
        starts; start() serves on this socket. Idempotent."""
        if self._socket is None:
            self._socket = bind(self._listen)
            self.port = int(self._socket.getsockname()[1])

    async def start(self) -> None:
        """Bind (unless open() did), then serve in the background."""
        self.open()
        self._task = self._supervisor.spawn("api-http", self._serve)
        log.info("api serving", extra={"api_listen": f"{self._listen.host}:{self.port}"})

    async def _serve(self) -> None:
        # The first run uses the socket bound at start; a restart binds again (uvicorn
        # closes its sockets when it ends).
        sock, self._socket = self._socket, None
        if sock is None:
            sock = bind(HostPort(self._listen.host, self.port or self._listen.port))
        config = uvicorn.Config(
            self._app, lifespan="off", log_config=None, access_log=False, server_header=False,
            timeout_graceful_shutdown=int(SHUTDOWN_TIMEOUT_S),
        )  # fmt: skip
        server = self._server = _GatewayOwnedServer(config)
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits on a failed start: a failure here
            raise RuntimeError(f"the API server stopped at start ({exc.code})") from None
        finally:
            sock.close()

    async def stop(self) -> None:
        """Stop taking requests, give open ones a moment, then end; idempotent."""
        task, self._task = self._task, None
        server = self._server
        if task is not None:
            if server is not None:
                server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(task), SHUTDOWN_TIMEOUT_S * 2)
            except (TimeoutError, Exception):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()
