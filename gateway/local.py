"""The site's own services on the gateway: the project's ingest, alerting (in standby while
the centre is in charge) and tablet page, on the site broker and a local PostgreSQL with the
project's schema; the configuration replica and the local retention live in that database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from nattillsyn import log
from nattillsyn.alerting.service import AlertingService
from nattillsyn.api.app import ApiService
from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.db.migrate import migrate
from nattillsyn.db.pool import make_pool
from nattillsyn.ingest.service import IngestService
from nattillsyn.protocol import Alert, SiteSnapshot
from nattillsyn.settings import Settings

from .replica import apply_snapshot
from .upload import history_seq

logger = log.get(__name__)

PRUNE_EVERY_S = 3600.0
PRUNED = ("events", "room_states", "heartbeats")  # site telemetry; the centre keeps it all


class LocalSite:
    def __init__(
        self, settings: Settings, on_held: Callable[[Alert], None], clock: Clock = SYSTEM
    ) -> None:
        s, site = settings, settings.site
        self.settings = s.model_copy(
            update={
                "gateway": s.gateway.model_copy(update={"watch_sites": False}),
                "alerting": s.alerting.model_copy(
                    update={"client_id": f"nattillsyn-gateway-alerting-{site}"}
                ),
                "ingest": s.ingest.model_copy(
                    update={"client_id": f"nattillsyn-gateway-ingest-{site}"}
                ),
            }
        )
        self.clock = clock
        self.schema = s.database_schema
        self.retention_s = s.gateway.local_retention_h * 3600
        self.pool = make_pool(s.database_url, s.database_schema, max_size=4)
        self.ingest = IngestService(self.settings)
        self.alerting = AlertingService(self.settings)
        self.alerting.standby = True
        self.alerting.on_held = on_held
        self.api = ApiService(self.settings) if s.gateway.tablet_page else None

    @property
    def services(self) -> list[IngestService | AlertingService | ApiService]:
        """In start order."""
        return [svc for svc in (self.ingest, self.alerting, self.api) if svc is not None]

    async def open(self) -> None:
        """The database, migrated (before the services start)."""
        await migrate(self.settings.database_url, self.schema)
        await self.pool.open(wait=True)

    async def start(self) -> None:
        for svc in self.services:
            await svc.start()

    async def stop(self) -> None:
        for svc in reversed(self.services):
            with contextlib.suppress(Exception):
                await svc.stop()

    async def close(self) -> None:
        await self.pool.close()

    async def history_seq(self) -> int:
        """The last alert history row written here."""
        async with self.pool.connection() as conn:
            return await history_seq(conn)

    async def apply_snapshot(self, snap: SiteSnapshot) -> bool:
        """The centre's configuration of the site into the local database; True if it changed."""
        async with self.pool.connection() as conn:
            return await apply_snapshot(conn, snap)

    async def notify_live(self, note: str) -> None:
        """A message for the tablet page's live channel (best effort)."""
        with contextlib.suppress(Exception):
            async with self.pool.connection() as conn:
                await conn.execute("SELECT pg_notify('nattillsyn_live', %s)", (note,))

    async def prune(self) -> None:
        """Site telemetry is kept locally for `local_retention_h`."""
        while True:
            await self.clock.sleep(60)
            try:
                async with self.pool.connection() as conn:
                    for table in PRUNED:
                        await conn.execute(
                            f"DELETE FROM {table} WHERE ts < now() - make_interval(secs => %s)",
                            (self.retention_s,),
                        )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("local pruning failed", error=str(exc))
            await self.clock.sleep(PRUNE_EVERY_S)


__all__ = ["LocalSite"]
