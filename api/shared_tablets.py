"""Shared tablets: enrollment by a unit manager, staff PIN sign-in, quick switch, auto-lock.

A tablet is enrolled to one unit; it then holds a long-lived HttpOnly cookie whose token
only the tablet knows (the server keeps its SHA-256). On an enrolled tablet a staff member
signs in with user name + personal PIN (argon2-hashed); the PIN alone is useless
elsewhere. Wrong PINs are rate limited per staff member and per tablet. A PIN session is
short and slides with activity (`tablet.pin_session_s`): the server side of the auto-lock.
Signing in on a tablet ends the previous staff member's session there (quick switch).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web
from psycopg import AsyncConnection

from nattillsyn.alerting.notifiers import vapid_public_key

from . import auth
from .context import POOL, SETTINGS, USER, audit, json_response, read_body, request_site
from .models import (
    EnrollCode,
    EnrollmentCode,
    Me,
    PinSet,
    PinSignIn,
    PushSubscribe,
    StaffButton,
    TabletEnroll,
    TabletInfo,
    TabletList,
    TabletSummary,
)
from .problems import ProblemError
from .queries import tablets as db
from .queries.audit import log_access
from .queries.units import site_exists
from .routing import Routes
from .session import me_of, set_session_cookies

routes = Routes("tablets")
TABLET_COOKIE = "nattillsyn_tablet"
MANAGERS = ("unit_manager", "sysadmin")
STAFF_ROLES = ("night_staff", "unit_manager", "sysadmin")


@dataclass(frozen=True)
class Tablet:
    id: str
    site: str
    name: str
    groups: tuple[str, ...]


async def tablet_for(request: web.Request) -> Tablet | None:
    """The enrolled tablet this request comes from, if any."""
    token = request.cookies.get(TABLET_COOKIE)
    if not token:
        return None
    async with request.app[POOL].connection() as conn:
        row = await db.touch(conn, auth.token_hash(token))
    return Tablet(str(row[0]), row[1], row[2], tuple(row[3] or ())) if row else None


async def audit_tablet(
    request: web.Request, tablet: Tablet, action: str, what: str, detail: dict | None = None
) -> None:
    """Access-log row for what a locked tablet shows (no staff signed in)."""
    async with request.app[POOL].connection() as conn:
        await log_access(
            conn,
            user_id=None,
            username=f"tablet:{tablet.name}",
            role="tablet",
            action=action,
            purpose="nattillsyn",
            what=what,
            site=tablet.site,
            detail=detail,
        )


def _set_tablet_cookie(request: web.Request, resp: web.StreamResponse, token: str) -> None:
    cfg = request.app[SETTINGS]
    resp.set_cookie(
        TABLET_COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=cfg.api.cookie_secure,
        max_age=int(cfg.tablet.cookie_days * 86400),
        path="/",
    )


async def _known_site(request: web.Request, site: str) -> None:
    async with request.app[POOL].connection() as conn:
        if not await site_exists(conn, site):
            raise ProblemError(422, "Invalid request body", f"site: no unit {site!r}")


async def _create_tablet(
    request: web.Request, site: str, name: str, groups: list[str], by: str
) -> tuple[Tablet, str]:
    token = secrets.token_urlsafe(32)
    await _known_site(request, site)
    async with request.app[POOL].connection() as conn:
        tid = await db.insert(conn, site, name, auth.token_hash(token), groups, by)
    return Tablet(tid, site, name, tuple(groups)), token


async def _info(request: web.Request, tablet: Tablet | None) -> TabletInfo:
    cfg = request.app[SETTINGS]
    key = cfg.alerting.vapid_private_key
    vapid = vapid_public_key(key.get_secret_value()) if key else None
    if tablet is None:
        return TabletInfo(
            enrolled=False, auto_lock_s=cfg.tablet.auto_lock_s, vapid_public_key=vapid
        )
    async with request.app[POOL].connection() as conn:
        rows = await db.staff_buttons(conn, tablet.id, tablet.site)
    staff = [StaffButton(username=r[0], display_name=r[1], recent=r[2]) for r in rows]
    return TabletInfo(
        enrolled=True,
        id=tablet.id,
        name=tablet.name,
        site=tablet.site,
        groups=list(tablet.groups),
        auto_lock_s=cfg.tablet.auto_lock_s,
        staff=staff,
        vapid_public_key=vapid,
    )


async def _enrollment(request: web.Request) -> tuple[TabletEnroll, str]:
    """The enrollment asked for, and its unit (one of the manager's)."""
    body = await read_body(request, TabletEnroll)
    site = body.site or await request_site(request)
    if not request[USER].may_see(site):
        raise ProblemError(403, "Forbidden", "not a unit of yours")
    return body, site


@routes.get("/api/v1/tablet", roles=None, response=TabletInfo)
async def tablet_info(request: web.Request) -> web.Response:
    """This browser as a shared tablet: enrolled?, unit, staff to sign in, auto-lock time."""
    return json_response(await _info(request, await tablet_for(request)))


@routes.post(
    "/api/v1/tablets", roles=MANAGERS, request=TabletEnroll, response=TabletInfo, status=201
)
async def enroll_here(request: web.Request) -> web.Response:
    """Enroll this browser as a shared tablet of a unit (a manager signed in on it)."""
    body, site = await _enrollment(request)
    by = request[USER].username
    tablet, token = await _create_tablet(request, site, body.name, body.groups, by)
    await audit(request, "change", "tablet enroll", site=site, detail={"tablet": tablet.id})
    resp = json_response(await _info(request, tablet), status=201)
    _set_tablet_cookie(request, resp, token)
    return resp


@routes.post(
    "/api/v1/tablets/codes",
    roles=MANAGERS,
    request=TabletEnroll,
    response=EnrollmentCode,
    status=201,
)
async def enrollment_code(request: web.Request) -> web.Response:
    """A one-time code to enroll a tablet without signing in on it."""
    body, site = await _enrollment(request)
    await _known_site(request, site)
    code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(10))
    expires = datetime.now(UTC) + timedelta(
        seconds=request.app[SETTINGS].tablet.enrollment_code_ttl_s
    )
    async with request.app[POOL].connection() as conn:
        await db.insert_enrollment_code(
            conn,
            auth.token_hash(code),
            site,
            body.name,
            body.groups,
            request[USER].username,
            expires,
        )
    await audit(request, "change", "tablet enrollment code", site=site)
    return json_response(EnrollmentCode(code=code, expires_at=expires), status=201)


@routes.post(
    "/api/v1/tablet/enroll", roles=None, request=EnrollCode, response=TabletInfo, problems=(400,)
)
async def enroll_with_code(request: web.Request) -> web.Response:
    """Enroll this browser with a one-time code from a manager."""
    body = await read_body(request, EnrollCode)
    async with request.app[POOL].connection() as conn:
        row = await db.use_enrollment_code(conn, auth.token_hash(body.code.strip().upper()))
    if row is None:
        raise ProblemError(400, "Bad Request", "unknown, used or expired code")
    tablet, token = await _create_tablet(request, row[0], row[1], list(row[2] or []), row[3])
    resp = json_response(await _info(request, tablet))
    _set_tablet_cookie(request, resp, token)
    return resp


@routes.get("/api/v1/tablets", roles=MANAGERS, response=TabletList, query=("site",))
async def list_tablets(request: web.Request) -> web.Response:
    """Enrolled tablets of a unit."""
    site = await request_site(request)
    async with request.app[POOL].connection() as conn:
        rows = await db.enrolled(conn, site)
    return json_response(
        TabletList(
            tablets=[
                TabletSummary(
                    id=r[0],
                    name=r[1],
                    site=r[2],
                    groups=list(r[3]),
                    enrolled_at=r[4],
                    last_seen_at=r[5],
                )
                for r in rows
            ]
        )
    )


@routes.delete("/api/v1/tablets/{tablet_id}", roles=MANAGERS, status=204)
async def revoke_tablet(request: web.Request) -> web.Response:
    """Revoke a tablet (lost or replaced): its cookie stops working at once."""
    tablet_id = request.match_info["tablet_id"]
    async with request.app[POOL].connection() as conn:
        site = await db.site_of(conn, tablet_id)
        if site is None or not request[USER].may_see(site):
            raise ProblemError(404, "Not Found", "no such tablet")
        await db.revoke(conn, tablet_id)
    await audit(request, "change", "tablet revoke", site=site)
    return web.Response(status=204)


@routes.post("/api/v1/me/pin", roles=STAFF_ROLES, request=PinSet, status=204, problems=(422,))
async def set_pin(request: web.Request) -> web.Response:
    """Set your personal PIN for shared tablets (confirm with your password)."""
    body = await read_body(request, PinSet)
    user: auth.User = request[USER]
    if len(body.pin) < request.app[SETTINGS].tablet.pin_min_length:
        raise ProblemError(422, "Invalid request body", "PIN too short")
    if len(set(body.pin)) == 1 or body.pin in "01234567890" or body.pin in "9876543210":
        raise ProblemError(422, "Invalid request body", "PIN too easy to guess")
    async with request.app[POOL].connection() as conn:
        if body.password is None:  # single sign-on users have no password: a fresh SSO will do
            token = auth.token_hash(request.cookies.get(auth.COOKIE, ""))
            if not await db.fresh_sso_session(conn, token):
                raise ProblemError(
                    401, "Unauthorized", "confirm with your password or sign in again (SSO)"
                )
        elif not await auth.password_matches(conn, user.id, body.password):
            raise ProblemError(401, "Unauthorized", "wrong password")
        await db.set_pin(conn, user.id, auth.hash_password(body.pin))
    await audit(request, "change", "pin set")
    return web.Response(status=204)


async def start_tablet_session(
    conn: AsyncConnection, tablet: Tablet, user_id: str, provider: str, hours: float
) -> auth.NewSession:
    """Sign a staff member in on the tablet (quick switch: whoever was signed in there is out)."""
    session = await auth.start_session(conn, user_id, hours, provider=provider, client=tablet.name)
    await db.switch_signin(conn, tablet.id, auth.token_hash(session.token), user_id)
    return session


@routes.post(
    "/api/v1/tablet/signin",
    roles=None,
    request=PinSignIn,
    response=Me,
    problems=(401, 403, 429),
)
async def pin_signin(request: web.Request) -> web.Response:
    """Staff PIN sign-in on an enrolled tablet; ends the previous staff member's session there."""
    tablet = await tablet_for(request)
    if tablet is None:
        raise ProblemError(403, "Forbidden", "PIN sign-in works only on an enrolled tablet")
    body = await read_body(request, PinSignIn)
    cfg = request.app[SETTINGS].tablet
    window = timedelta(seconds=cfg.pin_window_s)
    async with request.app[POOL].connection() as conn:
        row = await db.pin_candidate(
            conn,
            body.username,
            tablet.site,
            tablet.id,
            local_passwords=request.app[SETTINGS].oidc.local_passwords,
            sso_within_s=request.app[SETTINGS].api.session_hours * 3600,
        )
        user_id = row[0] if row else None
        user_fails, tablet_fails = await db.pin_failures(conn, user_id, tablet.id, window)
        if user_fails >= cfg.pin_max_failures or tablet_fails >= cfg.tablet_max_failures:
            raise ProblemError(
                429,
                "Too Many Requests",
                "too many wrong PINs: wait, or sign in with your password",
                retry_after_s=int(cfg.pin_window_s),
            )
        ok = (
            row is not None
            and row[2] in STAFF_ROLES
            and (row[3] or row[2] == "sysadmin")
            and auth.verify_password(row[1], body.pin)
        )
        if row is None or row[1] is None:
            auth.verify_password(None, body.pin)  # same time whether or not the user exists
        await db.record_pin_attempt(conn, tablet.id, user_id, ok)
        if not ok:
            raise ProblemError(401, "Unauthorized", "wrong user or PIN")
        if row[4] and not row[5]:  # single sign-on staff: PIN only after SSO here this shift
            raise ProblemError(
                403,
                "Forbidden",
                "sign in with your organisation account on this tablet first this shift",
            )
        async with conn.transaction():
            session = await start_tablet_session(
                conn, tablet, user_id, "pin", cfg.pin_session_s / 3600
            )
    request[USER] = session.user
    await audit(request, "login", "tablet pin", site=tablet.site, detail={"tablet": tablet.name})
    resp = json_response(me_of(session.user))
    set_session_cookies(request, resp, session)
    return resp


@routes.post("/api/v1/tablet/lock", roles=None, status=204)
async def lock(request: web.Request) -> web.Response:
    """Lock the tablet: the staff session on it ends; alerts keep sounding on the lock screen."""
    tablet = await tablet_for(request)
    token = request.cookies.get(auth.COOKIE)
    async with request.app[POOL].connection() as conn:
        if tablet is not None:
            await db.end_signins(conn, tablet.id, "lock")
        if token:
            await auth.logout(conn, token)
    resp = web.Response(status=204)
    resp.del_cookie(auth.COOKIE, path="/")
    return resp


@routes.post("/api/v1/tablet/activity", roles=STAFF_ROLES, status=204)
async def activity(request: web.Request) -> web.Response:
    """The staff member touched the tablet: extend the PIN session (sliding expiry)."""
    token = request.cookies.get(auth.COOKIE, "")
    secs = request.app[SETTINGS].tablet.pin_session_s
    async with request.app[POOL].connection() as conn:
        await db.extend_pin_session(conn, auth.token_hash(token), secs)
    return web.Response(status=204)


@routes.post("/api/v1/tablet/push", roles=None, request=PushSubscribe, status=204, problems=(403,))
async def push_subscribe(request: web.Request) -> web.Response:
    """Register this tablet's Web Push subscription (alerts reach a page in the background)."""
    tablet = await tablet_for(request)
    if tablet is None:
        raise ProblemError(403, "Forbidden", "only enrolled tablets receive push")
    body = await read_body(request, PushSubscribe)
    async with request.app[POOL].connection() as conn:
        await db.subscribe_push(conn, body.endpoint, tablet.id, tablet.site, body.p256dh, body.auth)
    return web.Response(status=204)
