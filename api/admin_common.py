"""What the administration route modules share: CSRF-checked routes, unit scoping, purpose."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web
from psycopg import AsyncConnection

from .auth import User
from .context import POOL, PUSHER, USER, Handler, check_csrf_token
from .inclusion import ConsentFacts, Criterion, Facts, Status, status
from .problems import ProblemError
from .routing import Routes

MANAGERS = ("unit_manager", "sysadmin")
SYSADMIN = ("sysadmin",)
PURPOSE_HEADER = "X-Purpose"


class AdminRoutes(Routes):
    """Routes whose state-changing calls must also carry the session's CSRF token."""

    def route(self, method: str, path: str, **kw) -> Callable[[Handler], Handler]:
        outer = super().route
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


async def audit_change(request: web.Request, what: str, **kw) -> None:
    """An access-log row for a change, with the purpose the client gave."""
    from .context import audit

    await audit(request, "change", what, purpose=purpose(request, "administration"), **kw)


def purpose(request: web.Request, default: str) -> str:
    """Why the data is read: the client's `X-Purpose` header, else the route's purpose."""
    p = (request.headers.get(PURPOSE_HEADER) or "").strip()
    return p[:200] if p else default


def user(request: web.Request) -> User:
    return request[USER]


def check_site(request: web.Request, site: str) -> str:
    """A unit the user belongs to, else 404 (not 403: do not confirm that it exists)."""
    if not request[USER].may_see(site):
        raise ProblemError(404, "Not Found", "no such unit")
    return site


async def check_unit(request: web.Request, site: str) -> str:
    """An existing unit the user belongs to, else 404."""
    check_site(request, site)
    async with request.app[POOL].connection() as conn:
        row = await (await conn.execute("SELECT 1 FROM sites WHERE id = %s", (site,))).fetchone()
    if row is None:
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
    u = request[USER]
    return None if u.role == "sysadmin" else list(u.sites)


def parse_uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ProblemError(404, "Not Found", f"no such {what}") from None


async def resident_site(conn: AsyncConnection, request: web.Request) -> tuple[uuid.UUID, str]:
    """The resident of the path and its unit; 404 when absent or in another unit."""
    rid = parse_uuid(request.match_info["resident_id"], "resident")
    row = await (
        await conn.execute("SELECT site_id FROM residents WHERE id = %s", (rid,))
    ).fetchone()
    if row is None or not request[USER].may_see(row[0]):
        raise ProblemError(404, "Not Found", "no such resident")
    return rid, row[0]


async def criteria_for(conn: AsyncConnection, site: str) -> tuple[bool, list[tuple]]:
    """The unit's own checklist if it has one, else the organisation's defaults."""
    cur = await conn.execute(
        """SELECT site_id IS NOT NULL, key, label_sv, label_en, required FROM inclusion_criteria
           WHERE active AND (site_id = %s OR site_id IS NULL)
           ORDER BY site_id IS NULL, position, key""",
        (site,),
    )
    rows = await cur.fetchall()
    own = [r[1:] for r in rows if r[0]]
    return (True, own) if own else (False, [r[1:] for r in rows])


async def inclusion_status(conn: AsyncConnection, rid: uuid.UUID) -> Status:
    res = await (
        await conn.execute(
            """SELECT r.site_id, r.active, r.room_id IS NOT NULL, i.decision_reference,
                      i.decision_date, coalesce(i.offer_answer, 'pending'),
                      (now() AT TIME ZONE s.timezone)::date
               FROM residents r JOIN sites s ON s.id = r.site_id
               LEFT JOIN inclusions i ON i.resident_id = r.id WHERE r.id = %s""",
            (rid,),
        )
    ).fetchone()
    site, active, has_room, ref, ddate, answer, today = res
    _, crit = await criteria_for(conn, site)
    answers = dict(
        await (
            await conn.execute(
                "SELECT criterion, answer FROM inclusion_answers WHERE resident_id = %s", (rid,)
            )
        ).fetchall()
    )
    consents = [
        ConsentFacts(
            withdrawn=w is not None,
            cohabitants_consent=all(c.get("consented") for c in cohab or []),
            covers_monitoring="motion_analysis" in (scope or []),
        )
        for w, cohab, scope in await (
            await conn.execute(
                """SELECT withdrawn_at, cohabitants, scope FROM consents WHERE resident_id = %s
                   ORDER BY given_at DESC, recorded_at DESC""",
                (rid,),
            )
        ).fetchall()
    ]
    return status(
        Facts(
            active=active,
            has_room=has_room,
            decision_reference=ref,
            decision_date=ddate,
            offer_answer=answer,
            criteria=[Criterion(k, req) for k, _sv, _en, req in crit],
            answers=answers,
            consents=consents,
        ),
        today,
    )


async def maintain_monitoring(conn: AsyncConnection, rid: uuid.UUID) -> Status:
    """Set `residents.monitoring_active` from decision, offer, criteria and consent."""
    st = await inclusion_status(conn, rid)
    await conn.execute(
        "UPDATE residents SET monitoring_active = %s WHERE id = %s AND monitoring_active <> %s",
        (st.monitoring_allowed, rid, st.monitoring_allowed),
    )
    return st


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


def now() -> datetime:
    return datetime.now(UTC)
