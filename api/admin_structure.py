"""Structure: organisation → units → rooms; staff and their units; inclusion criteria.

A sysadmin creates units and manages every user; a unit manager manages rooms,
criteria and the night staff of their own units.
"""

from __future__ import annotations

import psycopg
from aiohttp import web
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from . import auth
from .admin_common import (
    MANAGERS,
    SYSADMIN,
    AdminRoutes,
    audit_change,
    check_unit,
    criteria_for,
    kick,
    maintain_monitoring,
    parse_uuid,
    purpose,
)
from .context import POOL, USER, audit, json_response, read_body, record_change
from .models import (
    CriteriaList,
    CriteriaUpdate,
    Criterion,
    Organisation,
    Room,
    RoomCreate,
    RoomList,
    RoomUpdate,
    StaffUser,
    Unit,
    UnitCreate,
    UnitsOverview,
    UnitUpdate,
    UserCreate,
    UserList,
    UserUpdate,
)
from .problems import ProblemError

routes = AdminRoutes("structure")

UNIT_SQL = """
    SELECT s.id, s.name, s.kind, s.timezone, s.active, s.organisation_id,
           (SELECT count(*) FROM rooms r WHERE r.site_id = s.id AND r.active) AS rooms,
           (SELECT count(*) FROM residents x WHERE x.site_id = s.id AND x.active) AS residents
    FROM sites s"""


async def _units(conn: AsyncConnection, sites: list[str] | None) -> list[Unit]:
    async with conn.cursor(row_factory=dict_row) as cur:
        if sites is None:
            await cur.execute(f"{UNIT_SQL} ORDER BY s.id")
        else:
            await cur.execute(f"{UNIT_SQL} WHERE s.id = ANY(%s) ORDER BY s.id", (sites,))
        return [Unit(**r) for r in await cur.fetchall()]


def _timezone_ok(tz: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ProblemError(422, "Invalid request body", f"timezone: unknown {tz!r}") from None
    return tz


@routes.get("/api/v1/units", response=UnitsOverview, roles=MANAGERS)
async def list_units(request: web.Request) -> web.Response:
    """The organisation and the units the user belongs to."""
    u = request[USER]
    async with request.app[POOL].connection() as conn:
        units = await _units(conn, None if u.role == "sysadmin" else list(u.sites))
        org_id = units[0].organisation_id if units else "default"
        row = await (
            await conn.execute("SELECT id, name FROM organisations WHERE id = %s", (org_id,))
        ).fetchone()
    await audit(request, "read", "units", purpose=purpose(request, "administration"))
    return json_response(
        UnitsOverview(organisation=Organisation(id=row[0], name=row[1]), units=units)
    )


@routes.post(
    "/api/v1/units",
    roles=SYSADMIN,
    request=UnitCreate,
    response=Unit,
    status=201,
    problems=(409,),
)
async def create_unit(request: web.Request) -> web.Response:
    """Create a unit (care home or home-care area)."""
    body = await read_body(request, UnitCreate)
    _timezone_ok(body.timezone)
    try:
        async with request.app[POOL].connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO sites (id, name, kind, timezone) VALUES (%s, %s, %s, %s)",
                (body.id, body.name, body.kind, body.timezone),
            )
            (unit,) = await _units(conn, [body.id])
            await record_change(
                conn, request, "unit", body.id, "create", None, unit.model_dump(mode="json"),
                site=body.id,
            )  # fmt: skip
            await audit_change(request, "unit created", site=body.id, conn=conn)
    except psycopg.errors.UniqueViolation:
        raise ProblemError(409, "Conflict", "a unit with that id exists") from None
    return json_response(unit, status=201)


@routes.patch("/api/v1/units/{site}", roles=MANAGERS, request=UnitUpdate, response=Unit)
async def update_unit(request: web.Request) -> web.Response:
    """Rename a unit, change its kind or time zone, or take it out of use (sysadmin)."""
    site = await check_unit(request, request.match_info["site"])
    body = await read_body(request, UnitUpdate)
    if body.active is not None and request[USER].role != "sysadmin":
        raise ProblemError(403, "Forbidden", "only a system administrator opens or closes units")
    if body.timezone:
        _timezone_ok(body.timezone)
    async with request.app[POOL].connection() as conn, conn.transaction():
        (before,) = await _units(conn, [site])
        for col, value in body.model_dump(exclude_none=True).items():
            await conn.execute(f"UPDATE sites SET {col} = %s WHERE id = %s", (value, site))
        (after,) = await _units(conn, [site])
        await record_change(
            conn, request, "unit", site, "update", before.model_dump(mode="json"),
            after.model_dump(mode="json"), site=site,
        )  # fmt: skip
        await audit_change(request, "unit updated", site=site, conn=conn)
    kick(request)  # windows depend on the time zone
    return json_response(after)


# -- rooms ---------------------------------------------------------------------------------

ROOM_SQL = """
    SELECT r.id, r.name, r.active, x.id AS resident_id, x.display_name AS resident_name,
           (SELECT d.id FROM devices d WHERE d.site_id = r.site_id AND d.room_id = r.id
              AND d.status <> 'retired' ORDER BY d.provisioned_by IS NULL, d.id LIMIT 1) AS device
    FROM rooms r
    LEFT JOIN residents x ON x.site_id = r.site_id AND x.room_id = r.id AND x.active
    WHERE r.site_id = %s"""


async def _rooms(conn: AsyncConnection, site: str, room: str | None = None) -> list[Room]:
    async with conn.cursor(row_factory=dict_row) as cur:
        if room is None:
            await cur.execute(f"{ROOM_SQL} ORDER BY r.id", (site,))
        else:
            await cur.execute(f"{ROOM_SQL} AND r.id = %s", (site, room))
        return [Room(**r) for r in await cur.fetchall()]


@routes.get("/api/v1/units/{site}/rooms", roles=MANAGERS, response=RoomList)
async def list_rooms(request: web.Request) -> web.Response:
    """Rooms of a unit with the resident placed in each and its device."""
    site = await check_unit(request, request.match_info["site"])
    async with request.app[POOL].connection() as conn:
        rooms = await _rooms(conn, site)
    await audit(
        request, "read", "rooms", purpose=purpose(request, "administration"), site=site,
        detail={"residents": [str(r.resident_id) for r in rooms if r.resident_id]},
    )  # fmt: skip
    return json_response(RoomList(rooms=rooms))


@routes.post(
    "/api/v1/units/{site}/rooms",
    roles=MANAGERS,
    request=RoomCreate,
    response=Room,
    status=201,
    problems=(409,),
)
async def create_room(request: web.Request) -> web.Response:
    """Add a room to a unit."""
    site = await check_unit(request, request.match_info["site"])
    body = await read_body(request, RoomCreate)
    try:
        async with request.app[POOL].connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO rooms (site_id, id, name) VALUES (%s, %s, %s)",
                (site, body.id, body.name),
            )
            (room,) = await _rooms(conn, site, body.id)
            await record_change(
                conn, request, "room", f"{site}/{body.id}", "create", None,
                room.model_dump(mode="json"), site=site,
            )  # fmt: skip
            await audit_change(request, "room created", site=site, room=body.id, conn=conn)
    except psycopg.errors.UniqueViolation:
        raise ProblemError(409, "Conflict", "a room with that id exists in the unit") from None
    return json_response(room, status=201)


@routes.patch(
    "/api/v1/units/{site}/rooms/{room}",
    roles=MANAGERS,
    request=RoomUpdate,
    response=Room,
    problems=(409,),
)
async def update_room(request: web.Request) -> web.Response:
    """Rename a room or take it out of use (only when nobody lives in it)."""
    site = await check_unit(request, request.match_info["site"])
    body = await read_body(request, RoomUpdate)
    room_id = request.match_info["room"]
    async with request.app[POOL].connection() as conn, conn.transaction():
        rooms = await _rooms(conn, site, room_id)
        if not rooms:
            raise ProblemError(404, "Not Found", "no such room")
        before = rooms[0]
        if body.active is False and before.resident_id is not None:
            raise ProblemError(409, "Conflict", "move the resident out of the room first")
        for col, value in body.model_dump(exclude_none=True).items():
            await conn.execute(
                f"UPDATE rooms SET {col} = %s WHERE site_id = %s AND id = %s",
                (value, site, room_id),
            )
        (after,) = await _rooms(conn, site, room_id)
        await record_change(
            conn, request, "room", f"{site}/{room_id}", "update", before.model_dump(mode="json"),
            after.model_dump(mode="json"), site=site,
        )  # fmt: skip
        await audit_change(request, "room updated", site=site, room=room_id, conn=conn)
    return json_response(after)


# -- inclusion criteria -----------------------------------------------------------------------


@routes.get("/api/v1/units/{site}/criteria", roles=MANAGERS, response=CriteriaList)
async def get_criteria(request: web.Request) -> web.Response:
    """The unit's inclusion criteria checklist (or the organisation's default)."""
    site = await check_unit(request, request.match_info["site"])
    async with request.app[POOL].connection() as conn:
        own, crit = await criteria_for(conn, site)
    await audit(request, "read", "criteria", purpose=purpose(request, "administration"), site=site)
    return json_response(
        CriteriaList(
            site=site,
            own=own,
            criteria=[
                Criterion(key=k, label_sv=sv, label_en=en, required=r) for k, sv, en, r in crit
            ],
        )
    )


@routes.put(
    "/api/v1/units/{site}/criteria",
    roles=MANAGERS,
    request=CriteriaUpdate,
    response=CriteriaList,
)
async def set_criteria(request: web.Request) -> web.Response:
    """Replace the unit's checklist; residents' monitoring is re-evaluated against it."""
    site = await check_unit(request, request.match_info["site"])
    body = await read_body(request, CriteriaUpdate)
    keys = [c.key for c in body.criteria]
    if len(set(keys)) != len(keys):
        raise ProblemError(422, "Invalid request body", "criteria: keys must be unique")
    async with request.app[POOL].connection() as conn, conn.transaction():
        own, before = await criteria_for(conn, site)
        await conn.execute(
            "UPDATE inclusion_criteria SET active = false WHERE site_id = %s", (site,)
        )
        for pos, c in enumerate(body.criteria, 1):
            await conn.execute(
                """INSERT INTO inclusion_criteria (site_id, key, label_sv, label_en, required,
                                                   position, active)
                   VALUES (%s, %s, %s, %s, %s, %s, true)
                   ON CONFLICT (coalesce(site_id, ''), key) DO UPDATE SET
                       label_sv = EXCLUDED.label_sv, label_en = EXCLUDED.label_en,
                       required = EXCLUDED.required, position = EXCLUDED.position, active = true""",
                (site, c.key, c.label_sv, c.label_en, c.required, pos),
            )
        own, after = await criteria_for(conn, site)
        rids = await (
            await conn.execute("SELECT id FROM residents WHERE site_id = %s AND active", (site,))
        ).fetchall()
        for (rid,) in rids:
            await maintain_monitoring(conn, rid)
        await record_change(
            conn, request, "criteria", site, "update", {"criteria": [list(c) for c in before]},
            {"criteria": [list(c) for c in after]}, site=site,
        )  # fmt: skip
        await audit_change(request, "criteria updated", site=site, conn=conn)
    kick(request)
    return json_response(
        CriteriaList(
            site=site,
            own=own,
            criteria=[
                Criterion(key=k, label_sv=sv, label_en=en, required=r) for k, sv, en, r in after
            ],
        )
    )


# -- staff ----------------------------------------------------------------------------------

USER_SQL = """
    SELECT u.id, u.username, u.display_name, u.role, u.active, u.auth_provider,
           coalesce(array_agg(us.site_id ORDER BY us.site_id)
                    FILTER (WHERE us.site_id IS NOT NULL), '{}') AS sites
    FROM users u LEFT JOIN user_sites us ON us.user_id = u.id"""


async def _users(conn: AsyncConnection, where: str, args: tuple) -> list[StaffUser]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"{USER_SQL} WHERE {where} GROUP BY u.id ORDER BY u.username", args)
        return [StaffUser(**r) for r in await cur.fetchall()]


def _may_manage(request: web.Request, role: str, sites: list[str]) -> None:
    """A unit manager manages night staff and evaluators of their own units only."""
    me = request[USER]
    if me.role == "sysadmin":
        return
    if role not in ("night_staff", "evaluator"):
        raise ProblemError(403, "Forbidden", "only a system administrator manages this role")
    if not sites or not all(me.may_see(s) for s in sites):
        raise ProblemError(403, "Forbidden", "users only for units of yours")


async def _check_sites(conn: AsyncConnection, sites: list[str]) -> None:
    if not sites:
        return
    rows = await (
        await conn.execute("SELECT id FROM sites WHERE id = ANY(%s)", (sites,))
    ).fetchall()
    missing = set(sites) - {r[0] for r in rows}
    if missing:
        raise ProblemError(422, "Invalid request body", f"sites: no unit {sorted(missing)}")


@routes.get("/api/v1/users", roles=MANAGERS, response=UserList)
async def list_users(request: web.Request) -> web.Response:
    """Staff: every user (sysadmin) or the users of the manager's units."""
    me = request[USER]
    async with request.app[POOL].connection() as conn:
        if me.role == "sysadmin":
            users = await _users(conn, "true", ())
        else:
            users = await _users(
                conn,
                "u.id IN (SELECT user_id FROM user_sites WHERE site_id = ANY(%s))",
                (list(me.sites),),
            )
    await audit(request, "read", "users", purpose=purpose(request, "administration"))
    return json_response(UserList(users=users))


@routes.post(
    "/api/v1/users",
    roles=MANAGERS,
    request=UserCreate,
    response=StaffUser,
    status=201,
    problems=(409,),
)
async def create_user(request: web.Request) -> web.Response:
    """Create a staff account (argon2-hashed password) in one or more units."""
    body = await read_body(request, UserCreate)
    sites = sorted(set(body.sites))
    _may_manage(request, body.role, sites)
    try:
        async with request.app[POOL].connection() as conn, conn.transaction():
            await _check_sites(conn, sites)
            row = await (
                await conn.execute(
                    """INSERT INTO users (username, display_name, role, password_hash)
                       VALUES (%s, %s, %s, %s) RETURNING id""",
                    (
                        body.username,
                        body.display_name,
                        body.role,
                        auth.hash_password(body.password),
                    ),
                )
            ).fetchone()
            for s in sites:
                await conn.execute(
                    "INSERT INTO user_sites (user_id, site_id) VALUES (%s, %s)", (row[0], s)
                )
            (created,) = await _users(conn, "u.id = %s", (row[0],))
            await record_change(
                conn, request, "user", str(row[0]), "create", None,
                created.model_dump(mode="json"),
            )  # fmt: skip
            await audit_change(request, "user created", detail={"user": body.username}, conn=conn)
    except psycopg.errors.UniqueViolation:
        raise ProblemError(409, "Conflict", "the user name is taken") from None
    return json_response(created, status=201)


@routes.patch(
    "/api/v1/users/{user_id}",
    roles=MANAGERS,
    request=UserUpdate,
    response=StaffUser,
    problems=(409,),
)
async def update_user(request: web.Request) -> web.Response:
    """Change a user's name, role, units, password, or deactivate them (ends their sessions)."""
    uid = parse_uuid(request.match_info["user_id"], "user")
    body = await read_body(request, UserUpdate)
    me = request[USER]
    async with request.app[POOL].connection() as conn, conn.transaction():
        found = await _users(conn, "u.id = %s", (uid,))
        if not found:
            raise ProblemError(404, "Not Found", "no such user")
        before = found[0]
        if me.role != "sysadmin" and not any(me.may_see(s) for s in before.sites):
            raise ProblemError(404, "Not Found", "no such user")
        new_sites = sorted(set(body.sites)) if body.sites is not None else before.sites
        if str(uid) == me.id:  # own name and password only
            if body.active is False or body.role not in (None, me.role) or body.sites is not None:
                raise ProblemError(409, "Conflict", "you cannot change your own access")
        else:
            _may_manage(request, before.role, before.sites)
            _may_manage(request, body.role or before.role, new_sites)
        fields = body.model_dump(exclude_none=True, exclude={"sites", "password"})
        for col, value in fields.items():
            await conn.execute(
                f"UPDATE users SET {col} = %s, updated_at = now() WHERE id = %s", (value, uid)
            )
        if body.password is not None:
            await conn.execute(
                "UPDATE users SET password_hash = %s, updated_at = now() WHERE id = %s",
                (auth.hash_password(body.password), uid),
            )
        if body.sites is not None:
            await _check_sites(conn, new_sites)
            await conn.execute("DELETE FROM user_sites WHERE user_id = %s", (uid,))
            for s in new_sites:
                await conn.execute(
                    "INSERT INTO user_sites (user_id, site_id) VALUES (%s, %s)", (uid, s)
                )
        (after,) = await _users(conn, "u.id = %s", (uid,))
        if str(uid) != me.id and (
            body.password is not None
            or after.active is False
            or after.role != before.role
            or after.sites != before.sites
        ):
            await auth.end_sessions(conn, str(uid))
        await record_change(
            conn, request, "user", str(uid), "update", before.model_dump(mode="json"),
            after.model_dump(mode="json") | {"password_changed": body.password is not None},
        )  # fmt: skip
        await audit_change(request, "user updated", detail={"user": after.username}, conn=conn)
    return json_response(after)
