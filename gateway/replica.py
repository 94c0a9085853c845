"""The site's configuration on the gateway: the centre's snapshot applied to the local database.

The centre publishes a retained `SiteSnapshot` (`<root>/<site>/_site/gateway/config`) whenever
the care model changes and at least every `gateway.snapshot_interval_s`. The gateway writes it
into the same tables the centre has (sites, rooms, residents, tillsyn times, pauses, silences,
staff with their password and PIN hashes, enrolled tablets), in one transaction, so the same
alerting and api code run on site unchanged and `monitoring_active(…)` gives the same answer.
The triggers on those tables tell the local alerting at once (`NOTIFY nattillsyn_care`).
Rows the snapshot no longer has are deactivated (residents, rooms, staff), revoked (tablets)
or deleted (times, pauses, silences, PINs), never left to alert on stale grounds.
"""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from nattillsyn.protocol import SiteSnapshot


async def applied_digest(conn: AsyncConnection, site: str) -> str | None:
    cur = await conn.execute(
        "SELECT value FROM gateway_replica WHERE site = %s AND key = 'digest'", (site,)
    )
    row = await cur.fetchone()
    return row[0] if row else None


async def apply_snapshot(conn: AsyncConnection, snap: SiteSnapshot) -> bool:
    """Write the snapshot; False when this digest is already applied (nothing changed)."""
    site = snap.site.id
    if await applied_digest(conn, site) == snap.digest:
        return False
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO sites (id, name, timezone) VALUES (%s, %s, %s)
               ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, timezone = EXCLUDED.timezone""",
            (site, snap.site.name, snap.site.timezone),
        )
        room_ids = [r.id for r in snap.rooms]
        for r in snap.rooms:
            await conn.execute(
                """INSERT INTO rooms (site_id, id, name, active) VALUES (%s, %s, %s, true)
                   ON CONFLICT (site_id, id) DO UPDATE SET name = EXCLUDED.name, active = true""",
                (site, r.id, r.name),
            )
        await conn.execute(
            "UPDATE rooms SET active = false WHERE site_id = %s AND NOT (id = ANY(%s))",
            (site, room_ids),
        )
        # Deactivate first: a resident who moved must not collide with the one-per-room index.
        await conn.execute("UPDATE residents SET active = false WHERE site_id = %s", (site,))
        for p in snap.residents:
            await conn.execute(
                """INSERT INTO residents (id, site_id, room_id, display_name, pseudonym,
                       monitoring_active, active, monitor_from, monitor_to, risk_preset,
                       rule_overrides)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (id) DO UPDATE SET site_id = EXCLUDED.site_id,
                       room_id = EXCLUDED.room_id, display_name = EXCLUDED.display_name,
                       pseudonym = EXCLUDED.pseudonym,
                       monitoring_active = EXCLUDED.monitoring_active, active = EXCLUDED.active,
                       monitor_from = EXCLUDED.monitor_from, monitor_to = EXCLUDED.monitor_to,
                       risk_preset = EXCLUDED.risk_preset,
                       rule_overrides = EXCLUDED.rule_overrides""",
                (
                    p.id, site, p.room_id, p.display_name, p.pseudonym, p.monitoring_active,
                    p.active, p.monitor_from, p.monitor_to, p.risk_preset,
                    Jsonb(p.rule_overrides),
                ),
            )  # fmt: skip
        residents = [p.id for p in snap.residents]
        await conn.execute(
            """DELETE FROM tillsyn_times t USING residents r
               WHERE r.id = t.resident_id AND r.site_id = %s""",
            (site,),
        )
        for t in snap.tillsyn_times:
            await conn.execute(
                "INSERT INTO tillsyn_times (resident_id, at_time, mode) VALUES (%s, %s, %s)",
                (t.resident_id, t.at_time, t.mode),
            )
        await conn.execute(
            """DELETE FROM monitoring_pauses p USING residents r
               WHERE r.id = p.resident_id AND r.site_id = %s AND NOT (p.id = ANY(%s))""",
            (site, [p.id for p in snap.pauses]),
        )
        for pz in snap.pauses:
            if pz.resident_id not in residents:
                continue
            await conn.execute(
                """INSERT INTO monitoring_pauses (id, resident_id, starts_at, ends_at, reason)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (id) DO UPDATE SET starts_at = EXCLUDED.starts_at,
                       ends_at = EXCLUDED.ends_at, reason = EXCLUDED.reason""",
                (pz.id, pz.resident_id, pz.starts_at, pz.ends_at, pz.reason),
            )
        await conn.execute(
            "DELETE FROM alert_silences WHERE site = %s AND NOT (id = ANY(%s))",
            (site, [s.id for s in snap.silences]),
        )
        for s in snap.silences:
            await conn.execute(
                """INSERT INTO alert_silences (id, site, room, kinds, starts_at, ends_at, reason,
                       created_by, practice)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (id) DO UPDATE SET ends_at = EXCLUDED.ends_at,
                       kinds = EXCLUDED.kinds, room = EXCLUDED.room""",
                (
                    s.id, site, s.room, s.kinds, s.starts_at, s.ends_at, s.reason, s.created_by,
                    s.practice,
                ),
            )  # fmt: skip
        staff_ids = [u.id for u in snap.staff]
        for u in snap.staff:
            # A user name now held by another id (renamed or reused centrally) gives way.
            await conn.execute(
                """DELETE FROM user_sessions WHERE user_id IN (
                       SELECT id FROM users WHERE username = %s AND id <> %s)""",
                (u.username, u.id),
            )
            await conn.execute(
                "DELETE FROM users WHERE username = %s AND id <> %s", (u.username, u.id)
            )
            await conn.execute(
                """INSERT INTO users (id, username, display_name, role, password_hash, active)
                   VALUES (%s, %s, %s, %s, %s, true)
                   ON CONFLICT (id) DO UPDATE SET username = EXCLUDED.username,
                       display_name = EXCLUDED.display_name, role = EXCLUDED.role,
                       password_hash = EXCLUDED.password_hash, active = true""",
                (u.id, u.username, u.display_name, u.role, u.password_hash),
            )
            await conn.execute(
                """INSERT INTO user_sites (user_id, site_id) VALUES (%s, %s)
                   ON CONFLICT DO NOTHING""",
                (u.id, site),
            )
            if u.pin_hash:
                await conn.execute(
                    """INSERT INTO staff_pins (user_id, pin_hash) VALUES (%s, %s)
                       ON CONFLICT (user_id) DO UPDATE SET pin_hash = EXCLUDED.pin_hash""",
                    (u.id, u.pin_hash),
                )
            else:
                await conn.execute("DELETE FROM staff_pins WHERE user_id = %s", (u.id,))
        # Staff who left the unit can no longer sign in here.
        await conn.execute(
            "UPDATE users SET active = false WHERE NOT (id = ANY(%s)) AND active",
            (staff_ids,),
        )
        await conn.execute("DELETE FROM user_sessions WHERE NOT (user_id = ANY(%s))", (staff_ids,))
        for tb in snap.tablets:
            await conn.execute(
                """INSERT INTO tablets (id, site_id, name, token_hash, groups, enrolled_by)
                   VALUES (%s, %s, %s, %s, %s, 'centre')
                   ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,
                       token_hash = EXCLUDED.token_hash, groups = EXCLUDED.groups,
                       revoked_at = NULL""",
                (tb.id, site, tb.name, tb.token_hash, tb.groups),
            )
        await conn.execute(
            """UPDATE tablets SET revoked_at = now()
               WHERE site_id = %s AND revoked_at IS NULL AND NOT (id = ANY(%s))""",
            (site, [tb.id for tb in snap.tablets]),
        )
        await conn.execute(
            """INSERT INTO gateway_replica (site, key, value) VALUES (%s, 'digest', %s)
               ON CONFLICT (site, key) DO UPDATE SET value = EXCLUDED.value, at = now()""",
            (site, snap.digest),
        )
    return True


__all__ = ["applied_digest", "apply_snapshot"]
