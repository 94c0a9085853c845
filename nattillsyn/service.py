"""Explicit start/stop for asyncio services, and running them until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Sequence
from typing import Protocol

from nattillsyn import log
from nattillsyn.systemd import Notifier

logger = log.get(__name__)


class Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def run_until_signalled(
    services: Sequence[Service],
    stop: asyncio.Event | None = None,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Start services in order, wait for SIGINT/SIGTERM (or `stop`), stop them in reverse."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started: list[Service] = []
    notifier = Notifier()  # systemd Type=notify + WatchdogSec; a no-op elsewhere
    # Fed from the start: systemd may arm the watchdog before READY.
    watchdog = asyncio.create_task(notifier.watchdog_loop(), name="sd-watchdog")
    try:
        for svc in services:
            await svc.start()
            started.append(svc)
            logger.info("service started", service=svc.name)
        if on_started is not None:
            on_started()
        notifier.ready("running " + ", ".join(s.name for s in started))
        await stop.wait()
    finally:
        notifier.stopping()
        watchdog.cancel()
        for svc in reversed(started):
            try:
                await asyncio.wait_for(svc.stop(), 15)
                logger.info("service stopped", service=svc.name)
            except Exception:
                logger.exception("service stop failed", service=svc.name)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def cancel_all(tasks) -> None:
    """Cancel the tasks and wait until each has finished."""
    tasks = list(tasks)
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t
