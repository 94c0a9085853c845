"""systemd service notification (sd_notify protocol) without a C library.

Under a unit with `Type=notify` systemd passes `$NOTIFY_SOCKET` (a Unix datagram
socket); the service sends `READY=1` when it serves, `WATCHDOG=1` at least every
`$WATCHDOG_USEC / 2` when the unit sets `WatchdogSec=`, and `STOPPING=1` on the
way out. Outside systemd every call is a cheap no-op.

The watchdog is fed from the asyncio loop, so a loop that hangs (a blocking call,
a deadlock) stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping

from nattillsyn import log

logger = log.get(__name__)


class Notifier:
    """Send sd_notify messages to the socket systemd named in the environment."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = self._address(env.get("NOTIFY_SOCKET", ""))
        # Worker processes inherit the environment; only the process systemd started speaks
        # (NotifyAccess=main would log every message from another PID as an error).
        main = env.get("SYSTEMD_EXEC_PID") or env.get("WATCHDOG_PID")
        if main and main != str(os.getpid()):
            self.address = None
        self.watchdog_usec = self._watchdog_usec(env)

    @staticmethod
    def _address(raw: str) -> str | None:
        if not raw:
            return None
        if raw.startswith("@"):  # abstract namespace
            return "\0" + raw[1:]
        if raw.startswith("/"):
            return raw
        return None  # vsock and other forms: not used on our targets

    @staticmethod
    def _watchdog_usec(env: Mapping[str, str]) -> int | None:
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        pid = env.get("WATCHDOG_PID")
        # The watchdog belongs to the main process only (not to children it spawned).
        if usec <= 0 or (pid and pid != str(os.getpid())):
            return None
        return usec

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half the watchdog timeout, as sd_watchdog_enabled advises."""
        if self.address is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2_000_000

    def notify(self, *fields: str) -> bool:
        """Send `KEY=value` lines in one datagram; False (never an exception) when it fails."""
        if self.address is None:
            return False
        data = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(data, self.address)
            return True
        except OSError as exc:
            logger.warning("sd_notify failed", error=str(exc))
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str = "") -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    async def watchdog_loop(self, healthy: Callable[[], bool] | None = None) -> None:
        """Ping while the loop runs (and `healthy()` holds); returns at once without a watchdog."""
        interval = self.watchdog_interval
        if interval is None:
            return
        while True:
            if healthy is None or healthy():
                self.watchdog()
            await asyncio.sleep(interval)
