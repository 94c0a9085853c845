"""Units, rooms, inclusion criteria and staff accounts."""

from __future__ import annotations

import uuid

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from ..models import Criterion, Organisation, Room, StaffUser, Unit, UnitCreate
from .rows import update_row

UNIT_SQL = """
    SELECT s.id, s.name, s.kind, s.timezone, s.active, s.organisation_id,
           (SELECT count(*) FROM rooms r WHERE r.site_id = s.id AND r.active) AS rooms,
           (SELECT count(*) FROM residents x WHERE x.site_id = s.id AND x.active) AS residents
    FROM sites s"""


async def units(conn: AsyncConnection, sites: list[str] | None) -> list[Unit]:
    """The units of `sites` (None: every unit), by id."""
    async with conn.cursor(row_factory=dict_row) as cur:
        if sites is None:
            await cur.execute(f"{UNIT_SQL} ORDER BY s.id")
        else:
            await cur.execute(f"{UNIT_SQL} WHERE s.id = ANY(%s) ORDER BY s.id", (sites,))
        return [Unit(**r) for r in await cur.fetchall()]


async def unknown_units(conn: AsyncConnection, sites: list[str]) -> set[str]:
    """Those of `sites` that are no unit."""
    if not sites:
        return set()
    cur = await conn.execute("SELECT id FROM sites WHERE id = ANY(%s)", (sites,))
    return set(sites) - {r[0] for r in await cur.fetchall()}


async def organisation(conn: AsyncConnection, org_id: str) -> Organisation:
    cur = await conn.execute("SELECT id, name FROM organisations WHERE id = %s", (org_id,))
    row = await cur.fetchone()
    return Organisation(id=row[0], name=row[1])


async def create_unit(conn: AsyncConnection, body: UnitCreate) -> None:
    await conn.execute(
        "INSERT INTO sites (id, name, kind, timezone) VALUES (%s, %s, %s, %s)",
        (body.id, body.name, body.kind, body.timezone),
    )


async def update_unit(conn: AsyncConnection, site: str, fields: dict) -> None:
    await update_row(conn, "sites", {"id": site}, fields)


# -- rooms ---------------------------------------------------------------------------------

ROOM_SQL = """
    SELECT r.id, r.name, r.active, x.id AS resident_id, x.display_name AS resident_name,
           (SELECT d.id FROM devices d WHERE d.site_id = r.site_id AND d.room_id = r.id
              AND d.status <> 'retired' ORDER BY d.provisioned_by IS NULL, d.id LIMIT 1) AS device
    FROM rooms r
    LEFT JOIN residents x ON x.site_id = r.site_id AND x.room_id = r.id AND x.active
    WHERE r.site_id = %s"""


async def rooms(conn: AsyncConnection, site: str) -> list[Room]:
    """The unit's rooms with the resident placed in each and its device."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"{ROOM_SQL} ORDER BY r.id", (site,))
        return [Room(**r) for r in await cur.fetchall()]


async def room(conn: AsyncConnection, site: str, room_id: str) -> Room | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"{ROOM_SQL} AND r.id = %s", (site, room_id))
        row = await cur.fetchone()
    return Room(**row) if row else None


async def room_in_use(conn: AsyncConnection, site: str, room_id: str) -> bool:
    """The room exists in the unit and is active."""
    cur = await conn.execute(
        "SELECT active FROM rooms WHERE site_id = %s AND id = %s", (site, room_id)
    )
    row = await cur.fetchone()
    return row is not None and row[0]


async def create_room(conn: AsyncConnection, site: str, room_id: str, name: str) -> None:
    await conn.execute(
        "INSERT INTO rooms (site_id, id, name) VALUES (%s, %s, %s)", (site, room_id, name)
    )


async def update_room(conn: AsyncConnection, site: str, room_id: str, fields: dict) -> None:
    await update_row(conn, "rooms", {"site_id": site, "id": room_id}, fields)


# -- inclusion criteria --------------------------------------------------------------------


async def criteria_for(conn: AsyncConnection, site: str) -> tuple[bool, list[tuple]]:
    """The unit's own checklist if it has one, else the organisation's defaults:
    (own, [(key, label_sv, label_en, required), …])."""
    cur = await conn.execute(
        """SELECT site_id IS NOT NULL, key, label_sv, label_en, required FROM inclusion_criteria
           WHERE active AND (site_id = %s OR site_id IS NULL)
           ORDER BY site_id IS NULL, position, key""",
        (site,),
    )
    rows = await cur.fetchall()
    own = [r[1:] for r in rows if r[0]]
    return (True, own) if own else (False, [r[1:] for r in rows])


async def replace_criteria(conn: AsyncConnection, site: str, criteria: list[Criterion]) -> None:
    """The unit's checklist becomes `criteria`, in order (criteria left out are deactivated)."""
    await conn.execute("UPDATE inclusion_criteria SET active = false WHERE site_id = %s", (site,))
    for pos, c in enumerate(criteria, 1):
        await conn.execute(
            """INSERT INTO inclusion_criteria (site_id, key, label_sv, label_en, required,
                                               position, active)
               VALUES (%s, %s, %s, %s, %s, %s, true)
               ON CONFLICT (coalesce(site_id, ''), key) DO UPDATE SET
                   label_sv = EXCLUDED.label_sv, label_en = EXCLUDED.label_en,
                   required = EXCLUDED.required, position = EXCLUDED.position, active = true""",
            (site, c.key, c.label_sv, c.label_en, c.required, pos),
        )


async def active_residents(conn: AsyncConnection, site: str) -> list[uuid.UUID]:
    cur = await conn.execute("SELECT id FROM residents WHERE site_id = %s AND active", (site,))
    return [r[0] for r in await cur.fetchall()]


# -- staff ---------------------------------------------------------------------------------

USER_SQL = """
    SELECT u.id, u.username, u.display_name, u.role, u.active, u.auth_provider,
           coalesce(array_agg(us.site_id ORDER BY us.site_id)
                    FILTER (WHERE us.site_id IS NOT NULL), '{}') AS sites
    FROM users u LEFT JOIN user_sites us ON us.user_id = u.id"""


async def _users(conn: AsyncConnection, where: str, args: tuple) -> list[StaffUser]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"{USER_SQL} WHERE {where} GROUP BY u.id ORDER BY u.username", args)
        return [StaffUser(**r) for r in await cur.fetchall()]


async def users(conn: AsyncConnection, sites: list[str] | None) -> list[StaffUser]:
    """Every user (None), or the users of any of `sites`."""
    if sites is None:
        return await _users(conn, "true", ())
    where = "u.id IN (SELECT user_id FROM user_sites WHERE site_id = ANY(%s))"
    return await _users(conn, where, (sites,))


async def user(conn: AsyncConnection, uid: uuid.UUID) -> StaffUser | None:
    found = await _users(conn, "u.id = %s", (uid,))
    return found[0] if found else None


async def create_user(
    conn: AsyncConnection, username: str, display_name: str, role: str, password_hash: str
) -> uuid.UUID:
    cur = await conn.execute(
        """INSERT INTO users (username, display_name, role, password_hash)
           VALUES (%s, %s, %s, %s) RETURNING id""",
        (username, display_name, role, password_hash),
    )
    return (await cur.fetchone())[0]


async def update_user(conn: AsyncConnection, uid: uuid.UUID, fields: dict) -> None:
    await update_row(conn, "users", {"id": uid}, fields, touch=True)


async def set_user_units(
    conn: AsyncConnection, uid: uuid.UUID, sites: list[str], *, replace: bool = True
) -> None:
    if replace:
        await conn.execute("DELETE FROM user_sites WHERE user_id = %s", (uid,))
    for s in sites:
        await conn.execute("INSERT INTO user_sites (user_id, site_id) VALUES (%s, %s)", (uid, s))
