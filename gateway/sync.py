"""Sending the upload: `upload`'s rows to the centre in `GatewaySync` batches, each
confirmed by a `GatewaySyncAck`, and the watermarks (in the spool's key-value table) moved
only after the answer.

Two passes use it: after a fallback (alerts, history and rounds since the takeover, before
the handback) and every `SYNC_EVERY_S` in normal mode (visits and the access log written
on the gateway's tablet page).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Container
from datetime import datetime, timedelta

from prometheus_client import Counter
from psycopg_pool import AsyncConnectionPool

from nattillsyn import log
from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.mqtt import MqttClient, MqttError
from nattillsyn.protocol import GatewaySyncAck, TopicKind, Topics, encode
from nattillsyn.settings.gateway import GatewaySettings

from .spool import Spool
from .upload import audit_seq, batches, collect, history_seq

logger = log.get(__name__)

UPLOADED = Counter(
    "nattillsyn_gateway_uploaded_rows_total", "Rows uploaded to the centre", ["kind"]
)
SYNC_EVERY_S = 30.0  # access log and visits go up this often in normal mode


class Uploader:
    def __init__(
        self,
        site: str,
        cfg: GatewaySettings,
        topics: Topics,
        upstream: MqttClient,
        pool: AsyncConnectionPool | None,
        spool: Spool,
        confirmed: Container[uuid.UUID],
        clock: Clock = SYSTEM,
    ) -> None:
        self.site = site
        self.cfg = cfg
        self.topic = topics.site(site, TopicKind.gateway_sync)
        self.upstream = upstream
        self.pool = pool
        self.spool = spool
        self.confirmed = confirmed  # alerts the centre published itself (`HeldAlerts`)
        self.clock = clock
        self._acks: dict[uuid.UUID, asyncio.Future[GatewaySyncAck]] = {}

    def answered(self, ack: GatewaySyncAck) -> None:
        """The centre's answer to a batch."""
        fut = self._acks.pop(ack.correlation_id, None)
        if fut is not None and not fut.done():
            fut.set_result(ack)

    async def after_fallback(self) -> None:
        """Upload what happened since the takeover, retrying until the centre confirmed it."""
        delay = 1.0
        while not await self._fallback_pass():
            await self.clock.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _fallback_pass(self) -> bool:
        started = self.spool.get("fallback_started") or ""
        since = (
            datetime.fromisoformat(started) if started else self.clock.now() - timedelta(hours=1)
        )
        return await self.sync(
            alerts_after=int(self.spool.get("alerts_after") or 0), rounds_since=since
        )

    async def every_while(self, in_charge: Callable[[], bool]) -> None:
        """While the centre is `in_charge`, what staff did on the gateway's page goes up."""
        while True:
            await self.clock.sleep(SYNC_EVERY_S)
            if in_charge():
                with contextlib.suppress(Exception):
                    await self.sync(alerts_after=None, rounds_since=None)

    async def sync(self, *, alerts_after: int | None, rounds_since: datetime | None) -> bool:
        """One upload pass; True when the centre confirmed every batch."""
        if self.pool is None:
            return True
        visits_since = self.spool.get("visits_since")
        async with self.pool.connection() as conn:
            # Where the next pass starts: read before collecting, so nothing falls between.
            top_hist = await history_seq(conn)
            top_audit = await audit_seq(conn)
            began = self.clock.now()
            rows = await collect(
                conn,
                alerts_after=alerts_after,
                rounds_since=rounds_since,
                visits_since=(
                    datetime.fromisoformat(visits_since)
                    if visits_since
                    else began - timedelta(days=1)
                ),
                audit_after=int(self.spool.get("audit_after") or 0),
            )
        # Rows written in standby for alerts the centre itself published are its own story.
        standby_until = int(self.spool.get("takeover_seq") or 0)
        rows["history"] = [
            h
            for h in rows["history"]
            if h.seq <= top_hist and not (h.seq <= standby_until and h.alert_id in self.confirmed)
        ]
        keep = {h.alert_id for h in rows["history"]}
        rows["alerts"] = [a for a in rows["alerts"] if a.alert.alert_id in keep]
        rows["audit"] = [a for a in rows["audit"] if a.seq <= top_audit]
        for msg in batches(self.site, self.cfg.id, rows, self.cfg.sync_batch):
            if not await self._send(msg):
                return False
        if alerts_after is not None:
            self.spool.set("alerts_after", str(max(alerts_after, top_hist)))
        self.spool.set("audit_after", str(top_audit))
        self.spool.set("visits_since", (began - timedelta(minutes=5)).isoformat())
        return True

    async def _send(self, msg) -> bool:
        fut = asyncio.get_running_loop().create_future()
        self._acks[msg.correlation_id] = fut
        try:
            await self.upstream.publish(
                self.topic, encode(msg), qos=1, timeout=self.cfg.sync_timeout_s
            )
            ack = await asyncio.wait_for(fut, self.cfg.sync_timeout_s)
        except (TimeoutError, MqttError) as exc:
            logger.warning("upload not confirmed; will retry", error=str(exc) or "timeout")
            return False
        finally:
            self._acks.pop(msg.correlation_id, None)
        if not ack.ok:
            logger.error("centre refused an upload", error=ack.error)
            return False
        for kind in ("alerts", "history", "rounds", "visits", "audit"):
            UPLOADED.labels(kind).inc(len(getattr(msg, kind)))
        return True


__all__ = ["SYNC_EVERY_S", "Uploader"]
