"""Storage lifecycle from Python: refresh summaries, run maintenance, set policies.

The SQL side is in migrations 0010 (summaries) and 0011 (lifecycle); docs/storage.md
explains both. On TimescaleDB the extension's background jobs run retention,
compression and continuous-aggregate refreshes; `storage_maintain()` covers the rest
(and everything on plain PostgreSQL). `Maintainer` runs it on a schedule, one runner
per schema at a time (advisory lock), from the ingest service.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from nattillsyn import log
from nattillsyn.clock import SYSTEM, Clock

logger = log.get(__name__)


async def summary_kind(conn: AsyncConnection, name: str) -> str:
    cur = await conn.execute("SELECT kind FROM summary_registry WHERE name = %s", (name,))
    row = await cur.fetchone()
    if row is None:
        raise LookupError(f"no summary named {name!r}")
    return row[0]


async def refresh_summary(
    conn: AsyncConnection, name: str, start: datetime | None, end: datetime | None
) -> None:
    """Refresh a summary over [start, end) (None: unbounded), whichever kind it is.

    A continuous aggregate's refresh cannot run inside a transaction: `conn` must be
    in autocommit mode with no transaction open."""
    if await summary_kind(conn, name) == "continuous_aggregate":
        await conn.execute(
            "CALL public.refresh_continuous_aggregate(%s::regclass, %s::timestamptz, %s::timestamptz)",
            (name, start, end),
        )
    else:
        await conn.execute(
            "SELECT summary_refresh(%s, coalesce(%s::timestamptz, '-infinity'), "
            "coalesce(%s::timestamptz, 'infinity'))",
            (name, start, end),
        )


async def maintain(conn: AsyncConnection, now: datetime | None = None) -> dict[str, Any]:
    """One maintenance pass: retention of plain tables and due summary refreshes."""
    cur = await conn.execute("SELECT storage_maintain(coalesce(%s::timestamptz, now()))", (now,))
    row = await cur.fetchone()
    return row[0] if row else {}


async def set_policy(
    conn: AsyncConnection,
    table: str,
    retention: timedelta | None,
    compress_after: timedelta | None,
) -> bool:
    """Set a table's retention and compression age; returns whether anything changed."""
    cur = await conn.execute(
        "SELECT retention, compress_after FROM storage_policies WHERE table_name = %s", (table,)
    )
    row = await cur.fetchone()
    if row is None:
        raise LookupError(f"no storage policy for table {table!r}")
    if (row[0], row[1]) == (retention, compress_after):
        return False
    await conn.execute(
        "SELECT storage_set_policy(%s, %s::interval, %s::interval)",
        (table, retention, compress_after),
    )
    logger.info(
        "storage policy set",
        table=table,
        retention=str(retention) if retention else "keep",
        compress_after=str(compress_after) if compress_after else "never",
    )
    return True


class Maintainer:
    """Runs `maintain()` every `interval_s` while holding a per-schema advisory lock,
    so many ingest workers or hosts never run it twice at once."""

    def __init__(
        self, pool: AsyncConnectionPool, schema: str, interval_s: float, clock: Clock = SYSTEM
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.schema = schema
        self.interval_s = interval_s
        self.runs = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="storage-maintenance")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run_once(self) -> dict[str, Any] | None:
        """One pass if no other runner holds the lock; None if one does."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT pg_try_advisory_lock(hashtext('nattillsyn.maintain.' || %s))",
                (self.schema,),
            )
            got = (await cur.fetchone())[0]
            if not got:
                return None
            try:
                result = await maintain(conn)
            finally:
                await conn.execute(
                    "SELECT pg_advisory_unlock(hashtext('nattillsyn.maintain.' || %s))",
                    (self.schema,),
                )
        self.runs += 1
        if any(result.get("deleted", {}).values()) or result.get("refreshed"):
            logger.info("storage maintenance", **result)
        return result

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except (psycopg.Error, OSError) as exc:
                logger.warning("storage maintenance failed; will retry", error=str(exc))
            except Exception:
                logger.exception("storage maintenance failed; will retry")
            await self.clock.sleep(self.interval_s)
