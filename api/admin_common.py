"""What the administration route modules share: CSRF-checked routes, unit scoping, purpose,
and the one shape of every read (answer, then an access-log row) and every change (one
transaction with its version in `change_history` and its access-log row)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import psycopg
from aiohttp import web
from psycopg import AsyncConnection
from pydantic import BaseModel

from .context import POOL, PUSHER, USER, Handler, audit, check_csrf_token, record_change
from .problems import ProblemError
from .queries import residents as residents_db
from .queries import structure as structure_db
from .queries.units import site_exists
from .routing import Routes

MANAGERS = ("unit_manager", "sysadmin")
SYSADMIN = ("sysadmin",)
PURPOSE_HEADER = "X-Purpose"
UnitHandler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


class AdminRoutes(Routes):
    """Routes for unit managers and sysadmins unless they name other `roles` (None: public),
    whose state-changing calls must also carry the session's CSRF token."""

    def route(self, method: str, path: str, **kw) -> Callable[[Handler], Handler]:
        outer = super().route
        kw.setdefault("roles", MANAGERS)
        problems = tuple(kw.pop("problems", ()))
        if kw.get("roles", ()) is not None and method.upper() != "GET":
            problems = (*problems, 403)

        def register(handler: Handler) -> Handler:
            if kw.get("roles", ()) is None:  # public: no session, nothing to forge
                return outer(method, path, problems=problems, **kw)(handler)

            async def checked(request: web.Request) -> web.StreamResponse:
                check_csrf_token(request)
                return await handler(request)

            checked.__name__ = handler.__name__
            checked.__doc__ = handler.__doc__
            return outer(method, path, problems=problems, **kw)(checked)

        return register

    def unit(self, method: str, tail: str, **kw) -> Callable[[UnitHandler], Handler]:
        """A managers' route under `/api/v1/units/{site}`; the handler also gets the unit,
        checked first to exist and be the user's (else 404)."""

        def register(handler: UnitHandler) -> Handler:
            async def in_unit(request: web.Request) -> web.StreamResponse:
                return await handler(request, await check_unit(request, request.match_info["site"]))

            in_unit.__name__, in_unit.__doc__ = handler.__name__, handler.__doc__
            path = f"/api/v1/units/{{site}}{tail}"
            return self.route(method, path, **kw)(in_unit)

        return register


def purpose(request: web.Request, default: str) -> str:
    """Why the data is read: the client's `X-Purpose` header, else the route's purpose."""
    p = (request.headers.get(PURPOSE_HEADER) or "").strip()
    return p[:200] if p else default


async def audit_read(
    request: web.Request, what: str, *, action: str = "read", why: str = "administration", **kw
) -> None:
    """An access-log row for a read (or export), with the purpose the client gave."""
    await audit(request, action, what, purpose=purpose(request, why), **kw)


async def audit_change(request: web.Request, what: str, **kw) -> None:
    """An access-log row for a change, with the purpose the client gave."""
    await audit(request, "change", what, purpose=purpose(request, "administration"), **kw)


def connection(request: web.Request):
    """A pooled connection for a read."""
    return request.app[POOL].connection()


@asynccontextmanager
async def changing(
    request: web.Request, conflict: str | None = None
) -> AsyncIterator[AsyncConnection]:
    """The transaction of a change; a unique violation becomes a 409 saying `conflict`."""
    try:
        async with request.app[POOL].connection() as conn, conn.transaction():
            yield conn
    except psycopg.errors.UniqueViolation:
        if conflict is None:
            raise
        raise ProblemError(409, "Conflict", conflict) from None


def _json(value: BaseModel | dict | None) -> dict | None:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


async def record(
    conn: AsyncConnection,
    request: web.Request,
    what: str,
    version: tuple[str, str, str],
    before: BaseModel | dict | None,
    after: BaseModel | dict | None,
    *,
    site: str | None = None,
    **log,
) -> None:
    """A change's version (`version` = entity, its id, change; models as JSON) and its
    access-log row `what` (with `room`/`detail` in `log`), in the change's transaction."""
    entity, entity_id, change = version
    await record_change(
        conn, request, entity, entity_id, change, _json(before), _json(after), site=site
    )
    await audit_change(request, what, site=site, conn=conn, **log)


def check_site(request: web.Request, site: str) -> str:
    """A unit the user belongs to, else 404 (not 403: do not confirm that it exists)."""
    if not request[USER].may_see(site):
        raise ProblemError(404, "Not Found", "no such unit")
    return site


async def check_unit(request: web.Request, site: str) -> str:
    """An existing unit the user belongs to, else 404."""
    check_site(request, site)
    async with connection(request) as conn:
        if not await site_exists(conn, site):
            raise ProblemError(404, "Not Found", "no such unit")
    return site


def site_query(request: web.Request) -> str | None:
    site = request.query.get("site")
    if site is not None:
        check_site(request, site)
    return site


def visible_sites(request: web.Request) -> list[str] | None:
    """Units to filter on: the `?site=` asked for, the user's units, or None (sysadmin: all)."""
    site = site_query(request)
    if site is not None:
        return [site]
    return request[USER].own_sites()


async def scoped_read(
    request: web.Request,
    what: str,
    query: Callable[[AsyncConnection, list[str] | None], Awaitable[list]],
    detail: Callable[[list], dict],
) -> list:
    """`query` for the units the user may see (or the `?site=` asked for), the read logged
    with `detail(rows)` and the unit when only one was read."""
    sites = visible_sites(request)
    async with connection(request) as conn:
        rows = await query(conn, sites)
    one = sites[0] if sites and len(sites) == 1 else None
    await audit_read(request, what, site=one, detail=detail(rows))
    return rows


def parse_uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ProblemError(404, "Not Found", f"no such {what}") from None


async def resident_site(conn: AsyncConnection, request: web.Request) -> tuple[uuid.UUID, str]:
    """The resident of the path and its unit; 404 when absent or in another unit."""
    rid = parse_uuid(request.match_info["resident_id"], "resident")
    site = await residents_db.resident_unit(conn, rid)
    if site is None or not request[USER].may_see(site):
        raise ProblemError(404, "Not Found", "no such resident")
    return rid, site


async def require_room_in_use(conn: AsyncConnection, site: str, room: str) -> None:
    if not await structure_db.room_in_use(conn, site, room):
        raise ProblemError(422, "Invalid request body", f"no active room {room!r} in the unit")


def kick(request: web.Request, force: tuple[str, str] | None = None) -> None:
    """After a committed change: push device configs now (in the background)."""
    pusher = request.app.get(PUSHER)
    if pusher is not None:
        pusher.kick(force)


async def settle(request: web.Request) -> None:
    """After a committed change: push device configs and wait until the broker has them,
    so the answer (and the page) already shows what the device was told."""
    pusher = request.app.get(PUSHER)
    if pusher is not None:
        await pusher.settle()
