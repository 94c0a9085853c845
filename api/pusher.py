"""Keeps every managed device's retained DeviceConfig in step with `monitoring_active`.

Whenever `monitoring_active(site, room, now())` changes for a room (an administrator
recorded or withdrew consent, paused a night, changed the window, or the clock
crossed a window or pause boundary) the device in that room gets a new retained
`…/config/set` with `monitoring` set accordingly and `version` + 1. Administration
calls `kick()` after each change, so a withdrawal reaches the device at once; the
loop also wakes at the next boundary and at least every `interval_s`.

The version bump is one UPDATE guarded by the old value, so two api instances never
push two different versions for one change. Devices that were never provisioned
(seen only from their messages) are not managed: they get no config.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import time

from prometheus_client import Counter, Histogram
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from nattillsyn import log
from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import DeviceConfig, MonitoringWindow, TopicKind, Topics, encode

from .inclusion import Window, next_boundary

logger = log.get(__name__)

PUSHED = Counter("nattillsyn_api_config_pushed_total", "Device configs pushed", ["monitoring"])
RECONCILE = Histogram(
    "nattillsyn_api_config_reconcile_seconds",
    "Time to reconcile device configs with monitoring_active",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

_DEVICES = """
    SELECT d.site_id, d.id, d.room_id, d.desired_monitoring, d.desired_version,
           monitoring_active(d.site_id, d.room_id, now()) AS want,
           s.timezone, r.monitor_from, r.monitor_to
    FROM devices d
    JOIN sites s ON s.id = d.site_id
    LEFT JOIN residents r ON r.site_id = d.site_id AND r.room_id = d.room_id AND r.active
    WHERE d.status <> 'retired' AND d.room_id IS NOT NULL AND d.provisioned_by IS NOT NULL"""

_BUMP = """
    UPDATE devices SET desired_version = greatest(desired_version, config_version) + 1,
                       desired_monitoring = %(want)s, config_pushed_at = now()
    WHERE site_id = %(site)s AND id = %(device)s
      AND (desired_monitoring IS DISTINCT FROM %(want)s OR %(force)s)
    RETURNING desired_version, settings, room_id"""

_WINDOWS = """
    SELECT s.timezone, r.monitor_from, r.monitor_to
    FROM residents r JOIN sites s ON s.id = r.site_id
    WHERE r.active AND r.monitoring_active AND r.room_id IS NOT NULL"""

_PAUSE_EDGES = """
    SELECT p.starts_at, p.ends_at FROM monitoring_pauses p
    JOIN residents r ON r.id = p.resident_id
    WHERE r.active AND r.monitoring_active AND p.ends_at > now()"""


def device_config(
    version: int,
    monitoring: bool,
    settings: dict,
    timezone: str = "Europe/Stockholm",
    window: tuple[time, time] | None = None,
) -> DeviceConfig:
    """The config a device obeys: stored settings (fps, zones, …) plus monitoring, and the
    resident's nightly window so the device also stops on time while its link is down."""
    managed = {"version": version, "monitoring": monitoring, "timezone": timezone}
    if window is not None and window[0] != window[1]:  # equal: round the clock
        managed["schedule"] = [
            MonitoringWindow(start=window[0].strftime("%H:%M"), end=window[1].strftime("%H:%M"))
        ]
    try:
        return DeviceConfig(**{**settings, **managed})
    except ValidationError:
        logger.warning("stored device settings invalid; pushing defaults", settings=settings)
        return DeviceConfig(**managed)


class ConfigPusher:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        mqtt: MqttClient,
        topics: Topics,
        interval_s: float,
        clock: Clock = SYSTEM,
    ) -> None:
        self.pool, self.mqtt, self.topics, self.interval_s = pool, mqtt, topics, interval_s
        self.clock = clock
        self._wake = asyncio.Event()
        self._force: set[tuple[str, str]] = set()
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="api-config-pusher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def kick(self, force: tuple[str, str] | None = None) -> None:
        """Reconcile now; `force` = (site, device) pushes a new version even if unchanged."""
        if force is not None:
            self._force.add(force)
        self._wake.set()

    async def settle(self, timeout: float = 3.0) -> None:
        """Reconcile now and wait (at most `timeout`) until the configs are on the broker.

        Not cancelled on timeout: the push goes on in the background.
        """
        task = asyncio.ensure_future(self.reconcile())
        done, _ = await asyncio.wait({task}, timeout=timeout)
        self._wake.set()  # the loop recomputes its next boundary (a new pause, window)
        if task in done and task.exception() is not None:
            logger.warning("config push failed; the loop retries", error=str(task.exception()))
        elif task not in done:
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def push_now(self, site: str, device: str) -> list[DeviceConfig]:
        """Push a new version to one device now (and whatever else changed)."""
        self._force.add((site, device))
        return await self.reconcile()

    async def reconcile(self) -> list[DeviceConfig]:
        """Push a new config to every managed device whose monitoring answer changed."""
        async with self._lock:
            force, self._force = self._force, set()
            with RECONCILE.time():
                pushed = []
                async with self.pool.connection() as conn:
                    rows = await (await conn.execute(_DEVICES)).fetchall()
                    for site, device, _room, have, _v, want, tz, m_from, m_to in rows:
                        forced = (site, device) in force
                        if have is want and not forced:
                            continue
                        row = await (
                            await conn.execute(
                                _BUMP,
                                {"want": want, "site": site, "device": device, "force": forced},
                            )
                        ).fetchone()
                        if row is None:
                            continue  # another instance pushed it
                        version, settings, room = row
                        window = (m_from, m_to) if m_from is not None else None
                        cfg = device_config(version, want, settings or {}, tz, window)
                        topic = self.topics.device(site, room, device, TopicKind.config_set)
                        try:
                            await self.mqtt.publish(topic, encode(cfg), qos=1, retain=True)
                        except Exception:
                            # Not confirmed: forget what was pushed so the next round pushes
                            # again (a newer version; paho may still deliver this one).
                            await conn.execute(
                                "UPDATE devices SET desired_monitoring = NULL "
                                "WHERE site_id = %s AND id = %s",
                                (site, device),
                            )
                            raise
                        PUSHED.labels(str(want).lower()).inc()
                        logger.info(
                            "device config pushed",
                            site=site,
                            device=device,
                            version=version,
                            monitoring=want,
                        )
                        pushed.append(cfg)
                return pushed

    async def _next_wake(self) -> float:
        async with self.pool.connection() as conn:
            windows = [
                Window(tz, a, b) for tz, a, b in await (await conn.execute(_WINDOWS)).fetchall()
            ]
            edges = [e for row in await (await conn.execute(_PAUSE_EDGES)).fetchall() for e in row]
        now = self.clock.now()
        nxt = next_boundary(now, windows, edges)
        wait = self.interval_s
        if nxt is not None:
            wait = min(wait, max(0.05, (nxt - now).total_seconds() + 0.05))
        return wait

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            wait = self.interval_s
            try:
                await self.reconcile()
                wait = await self._next_wake()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("config reconciliation failed; retrying")
                wait = min(wait, 5.0)
            await self.clock.wait(self._wake, wait)
