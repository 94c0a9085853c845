"""What baseline (night visits before introduction) a unit has stored."""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import dict_row


async def baseline_overview(conn: AsyncConnection, site: str) -> tuple[dict, list[dict]]:
    """({first, last, nights}, the latest 50 imports newest first)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT min(night) AS first, max(night) AS last, count(*) AS nights
               FROM baseline_nights WHERE site = %s""",
            (site,),
        )
        nights = await cur.fetchone()
        await cur.execute(
            """SELECT id, imported_at, imported_by, source, rows FROM baseline_imports
               WHERE site = %s ORDER BY imported_at DESC LIMIT 50""",
            (site,),
        )
        return nights, await cur.fetchall()
