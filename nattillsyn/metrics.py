"""Prometheus metrics: every service exposes /metrics (the api on its own port too)."""

from __future__ import annotations

from prometheus_client import start_http_server

_started: set[int] = set()


def serve(port: int) -> None:
    """Expose the process registry on `port` (0: off). Idempotent per port."""
    if port and port not in _started:
        start_http_server(port, addr="127.0.0.1")
        _started.add(port)
