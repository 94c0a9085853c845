"""Synthetic history for the demo, so its evaluation report has months of nights to show.

The demo unit's own residents get the last `nights` nights of history (and a baseline before
that); two more synthetic units of 16 residents give the comparison between units. Every
evaluator and sysadmin user may see the synthetic units. Runs once per database.
"""

from __future__ import annotations

from datetime import date, timedelta

from psycopg import AsyncConnection

from nattillsyn import log

from . import synthetic
from .load import load
from .store import refresh, unit_names

logger = log.get(__name__)


async def seed_history(
    conn: AsyncConnection,
    site: str,
    *,
    nights: int = 120,
    units: int = 2,
    residents: int = 16,
    seed: int = 7,
    today: date | None = None,
) -> bool:
    """Generate and store the history; False if it is there already."""
    cur = await conn.execute("SELECT 1 FROM baseline_imports WHERE source = 'synthetic' LIMIT 1")
    if await cur.fetchone() is not None:
        return False
    cur = await conn.execute(
        """SELECT r.id, r.room_id, r.display_name, r.monitor_from, r.monitor_to,
                  coalesce(array_agg(t.at_time ORDER BY t.at_time)
                           FILTER (WHERE t.at_time IS NOT NULL), '{}'),
                  coalesce(array_agg(t.mode ORDER BY t.at_time)
                           FILTER (WHERE t.at_time IS NOT NULL), '{}')
           FROM residents r LEFT JOIN tillsyn_times t ON t.resident_id = r.id
           WHERE r.site_id = %s AND r.active AND r.room_id IS NOT NULL
           GROUP BY r.id ORDER BY r.room_id""",
        (site,),
    )
    own = [
        synthetic.ResidentSpec(
            id=rid, room=room, name=name, times=tuple(zip(times, modes, strict=True)),
            monitor_from=mf, monitor_to=mt,
        )
        for rid, room, name, mf, mt, times, modes in await cur.fetchall()
    ]  # fmt: skip
    cur = await conn.execute("SELECT name, timezone FROM sites WHERE id = %s", (site,))
    name, tz = await cur.fetchone()
    # New units under names no unit of the demo has taken yet.
    taken = set(await unit_names(conn))
    fresh = [
        u
        for u in synthetic.make_units(len(synthetic.UNIT_NAMES), residents, seed=seed)
        if u.site not in taken
    ][:units]
    specs = [
        synthetic.UnitSpec(site=site, name=name, residents=tuple(own), tz=tz, create=False),
        *fresh,
    ]
    last = (today or date.today()) - timedelta(days=1)
    first = last - timedelta(days=nights - 1)
    loaded = await load(conn, synthetic.generate(specs, first, nights, seed=seed))
    await conn.execute(
        """INSERT INTO user_sites (user_id, site_id)
           SELECT u.id, s FROM users u, unnest(%s::text[]) s
           WHERE u.role IN ('evaluator', 'sysadmin') ON CONFLICT DO NOTHING""",
        ([s.site for s in specs],),
    )
    summarised = await refresh(conn)
    logger.info(
        "demo history generated", units=loaded.units, first=str(first), last=str(last),
        rows=loaded.rows, resident_nights=summarised,
    )  # fmt: skip
    return True
