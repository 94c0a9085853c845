"""Structure: organisation → units → rooms; staff and their units; inclusion criteria.

A sysadmin creates units and manages every user; a unit manager manages rooms,
criteria and the night staff of their own units. Queries: `queries.structure`.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from . import auth
from .admin_common import (
    SYSADMIN,
    AdminRoutes,
    audit_read,
    changing,
    connection,
    kick,
    parse_uuid,
    record,
)
from .context import USER, json_response, read_body
from .models import (
    CriteriaList,
    CriteriaUpdate,
    Criterion,
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
from .queries import residents as residents_db
from .queries import structure as db

routes = AdminRoutes("structure")


def _timezone_ok(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ProblemError(422, "Invalid request body", f"timezone: unknown {tz!r}") from None
    return tz


@routes.get("/api/v1/units", response=UnitsOverview)
async def list_units(request: web.Request) -> web.Response:
    """The organisation and the units the user belongs to."""
    async with connection(request) as conn:
        units = await db.units(conn, request[USER].own_sites())
        org = await db.organisation(conn, units[0].organisation_id if units else "default")
    await audit_read(request, "units")
    return json_response(UnitsOverview(organisation=org, units=units))


@routes.post(
    "/api/v1/units", roles=SYSADMIN, request=UnitCreate, response=Unit, status=201, problems=(409,)
)
async def create_unit(request: web.Request) -> web.Response:
    """Create a unit (care home or home-care area)."""
    body = await read_body(request, UnitCreate)
    _timezone_ok(body.timezone)
    async with changing(request, "a unit with that id exists") as conn:
        await db.create_unit(conn, body)
        (unit,) = await db.units(conn, [body.id])
        await record(
            conn, request, "unit created", ("unit", body.id, "create"), None, unit, site=body.id
        )
    return json_response(unit, status=201)


@routes.unit("patch", "", request=UnitUpdate, response=Unit)
async def update_unit(request: web.Request, site: str) -> web.Response:
    """Rename a unit, change its kind or time zone, or take it out of use (sysadmin)."""
    body = await read_body(request, UnitUpdate)
    if body.active is not None and request[USER].role != "sysadmin":
        raise ProblemError(403, "Forbidden", "only a system administrator opens or closes units")
    if body.timezone:
        _timezone_ok(body.timezone)
    async with changing(request) as conn:
        (before,) = await db.units(conn, [site])
        await db.update_unit(conn, site, body.model_dump(exclude_none=True))
        (after,) = await db.units(conn, [site])
        await record(
            conn, request, "unit updated", ("unit", site, "update"), before, after, site=site
        )
    kick(request)  # windows depend on the time zone
    return json_response(after)


# -- rooms ---------------------------------------------------------------------------------


@routes.unit("get", "/rooms", response=RoomList)
async def list_rooms(request: web.Request, site: str) -> web.Response:
    """Rooms of a unit with the resident placed in each and its device."""
    async with connection(request) as conn:
        rooms = await db.rooms(conn, site)
    residents = [str(r.resident_id) for r in rooms if r.resident_id]
    await audit_read(request, "rooms", site=site, detail={"residents": residents})
    return json_response(RoomList(rooms=rooms))


@routes.unit("post", "/rooms", request=RoomCreate, response=Room, status=201, problems=(409,))
async def create_room(request: web.Request, site: str) -> web.Response:
    """Add a room to a unit."""
    body = await read_body(request, RoomCreate)
    async with changing(request, "a room with that id exists in the unit") as conn:
        await db.create_room(conn, site, body.id, body.name)
        room = await db.room(conn, site, body.id)
        await record(
            conn,
            request,
            "room created",
            ("room", f"{site}/{body.id}", "create"),
            None,
            room,
            site=site,
            room=body.id,
        )
    return json_response(room, status=201)


@routes.unit("patch", "/rooms/{room}", request=RoomUpdate, response=Room, problems=(409,))
async def update_room(request: web.Request, site: str) -> web.Response:
    """Rename a room or take it out of use (only when nobody lives in it)."""
    body = await read_body(request, RoomUpdate)
    room_id = request.match_info["room"]
    async with changing(request) as conn:
        before = await db.room(conn, site, room_id)
        if before is None:
            raise ProblemError(404, "Not Found", "no such room")
        if body.active is False and before.resident_id is not None:
            raise ProblemError(409, "Conflict", "move the resident out of the room first")
        await db.update_room(conn, site, room_id, body.model_dump(exclude_none=True))
        after = await db.room(conn, site, room_id)
        await record(
            conn,
            request,
            "room updated",
            ("room", f"{site}/{room_id}", "update"),
            before,
            after,
            site=site,
            room=room_id,
        )
    return json_response(after)


# -- inclusion criteria -----------------------------------------------------------------------


def _criteria(site: str, own: bool, crit: list[tuple]) -> CriteriaList:
    return CriteriaList(
        site=site,
        own=own,
        criteria=[Criterion(key=k, label_sv=sv, label_en=en, required=r) for k, sv, en, r in crit],
    )


@routes.unit("get", "/criteria", response=CriteriaList)
async def get_criteria(request: web.Request, site: str) -> web.Response:
    """The unit's inclusion criteria checklist (or the organisation's default)."""
    async with connection(request) as conn:
        own, crit = await db.criteria_for(conn, site)
    await audit_read(request, "criteria", site=site)
    return json_response(_criteria(site, own, crit))


@routes.unit("put", "/criteria", request=CriteriaUpdate, response=CriteriaList)
async def set_criteria(request: web.Request, site: str) -> web.Response:
    """Replace the unit's checklist; residents' monitoring is re-evaluated against it."""
    body = await read_body(request, CriteriaUpdate)
    keys = [c.key for c in body.criteria]
    if len(set(keys)) != len(keys):
        raise ProblemError(422, "Invalid request body", "criteria: keys must be unique")
    async with changing(request) as conn:
        _, before = await db.criteria_for(conn, site)
        await db.replace_criteria(conn, site, body.criteria)
        own, after = await db.criteria_for(conn, site)
        for rid in await db.active_residents(conn, site):
            await residents_db.maintain_monitoring(conn, rid)
        await record(
            conn,
            request,
            "criteria updated",
            ("criteria", site, "update"),
            {"criteria": [list(c) for c in before]},
            {"criteria": [list(c) for c in after]},
            site=site,
        )
    kick(request)
    return json_response(_criteria(site, own, after))


# -- staff ----------------------------------------------------------------------------------


def _may_manage(request: web.Request, role: str, sites: list[str]) -> None:
    """A unit manager manages night staff and evaluators of their own units only."""
    me = request[USER]
    if me.role == "sysadmin":
        return
    if role not in ("night_staff", "evaluator"):
        raise ProblemError(403, "Forbidden", "only a system administrator manages this role")
    if not sites or not all(me.may_see(s) for s in sites):
        raise ProblemError(403, "Forbidden", "users only for units of yours")


async def _check_sites(conn, sites: list[str]) -> None:
    missing = await db.unknown_units(conn, sites)
    if missing:
        raise ProblemError(422, "Invalid request body", f"sites: no unit {sorted(missing)}")


async def _record_user(conn, request, change: str, uid, username: str, before, after) -> None:
    """A staff account's version and its access-log row (by user name; in no one unit)."""
    what = f"user {change}d"
    await record(
        conn, request, what, ("user", str(uid), change), before, after, detail={"user": username}
    )


@routes.get("/api/v1/users", response=UserList)
async def list_users(request: web.Request) -> web.Response:
    """Staff: every user (sysadmin) or the users of the manager's units."""
    async with connection(request) as conn:
        users = await db.users(conn, request[USER].own_sites())
    await audit_read(request, "users")
    return json_response(UserList(users=users))


@routes.post("/api/v1/users", request=UserCreate, response=StaffUser, status=201, problems=(409,))
async def create_user(request: web.Request) -> web.Response:
    """Create a staff account (argon2-hashed password) in one or more units."""
    body = await read_body(request, UserCreate)
    sites = sorted(set(body.sites))
    _may_manage(request, body.role, sites)
    async with changing(request, "the user name is taken") as conn:
        await _check_sites(conn, sites)
        uid = await db.create_user(
            conn, body.username, body.display_name, body.role, auth.hash_password(body.password)
        )
        await db.set_user_units(conn, uid, sites, replace=False)
        created = await db.user(conn, uid)
        await _record_user(conn, request, "create", uid, body.username, None, created)
    return json_response(created, status=201)


@routes.patch("/api/v1/users/{user_id}", request=UserUpdate, response=StaffUser, problems=(409,))
async def update_user(request: web.Request) -> web.Response:
    """Change a user's name, role, units, password, or deactivate them (ends their sessions)."""
    uid = parse_uuid(request.match_info["user_id"], "user")
    body = await read_body(request, UserUpdate)
    me = request[USER]
    async with changing(request) as conn:
        before = await db.user(conn, uid)
        if before is None or (
            me.role != "sysadmin" and not any(me.may_see(s) for s in before.sites)
        ):
            raise ProblemError(404, "Not Found", "no such user")
        new_sites = sorted(set(body.sites)) if body.sites is not None else before.sites
        if str(uid) == me.id:  # own name and password only
            if body.active is False or body.role not in (None, me.role) or body.sites is not None:
                raise ProblemError(409, "Conflict", "you cannot change your own access")
        else:
            _may_manage(request, before.role, before.sites)
            _may_manage(request, body.role or before.role, new_sites)
        fields = body.model_dump(exclude_none=True, exclude={"sites", "password"})
        if body.password is not None:
            fields["password_hash"] = auth.hash_password(body.password)
        await db.update_user(conn, uid, fields)
        if body.sites is not None:
            await _check_sites(conn, new_sites)
            await db.set_user_units(conn, uid, new_sites)
        after = await db.user(conn, uid)
        if str(uid) != me.id and (
            body.password is not None
            or after.active is False
            or after.role != before.role
            or after.sites != before.sites
        ):
            await auth.end_sessions(conn, str(uid))
        changed = after.model_dump(mode="json") | {"password_changed": body.password is not None}
        await _record_user(conn, request, "update", uid, after.username, before, changed)
    return json_response(after)
