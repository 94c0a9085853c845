"""Prometheus metrics: every service exposes /metrics (the api on its own port too)."""

from __future__ import annotations

from prometheus_client import start_http_server

_started: set[int] = set()
# Loopback unless the settings say otherwise (a container publishes on 0.0.0.0 for Prometheus).
_addr = "127.0.0.1"


def bind(addr: str) -> None:
    """Address the metrics endpoints listen on (`Settings.metrics_host`); call before serve()."""
    global _addr
    _addr = addr


def serve(port: int) -> None:
    """Expose the process registry on `port` (0: off). Idempotent per port."""
    if port and port not in _started:
        start_http_server(port, addr=_addr)
        _started.add(port)
