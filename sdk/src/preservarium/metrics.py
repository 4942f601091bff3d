"""The Prometheus endpoint of a service."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server


class LabelCache:
    """metric.labels(...) children, cached: the hot path pays a dict lookup, not a lock."""

    def __init__(self) -> None:
        self._children: dict[tuple[object, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """The child of `metric` for `labels`."""
        key = (metric, *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


class MetricsEndpoint:
    """Serves `registry` on host:port over HTTP; port 0 means metrics are off."""

    def __init__(self, registry: CollectorRegistry, *, port: int, host: str = "0.0.0.0") -> None:
        self._registry = registry
        self._port = port
        self._host = host
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int | None:
        """The bound port while serving."""
        return None if self._server is None else int(self._server.server_port)

    def start(self) -> None:
        """Start serving (a daemon thread, as prometheus-client does)."""
        if self._port:
            self._server, self._thread = start_http_server(
                self._port, addr=self._host, registry=self._registry
            )

    def stop(self) -> None:
        """Stop serving; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> MetricsEndpoint:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
