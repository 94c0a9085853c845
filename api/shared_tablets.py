"""Shared tablets: enrollment by a unit manager, staff PIN sign-in, quick switch, auto-lock.

A tablet is enrolled to one unit; it then holds a long-lived HttpOnly cookie whose token
only the tablet knows (the server keeps its SHA-256). On an enrolled tablet a staff member
signs in with user name + personal PIN (argon2-hashed); the PIN alone is useless
elsewhere. Wrong PINs are rate limited per staff member and per tablet. A PIN session is
short and slides with activity (`tablet.pin_session_s`): the server side of the auto-lock.
Signing in on a tablet ends the previous staff member's session there (quick switch).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web

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
from .routing import Routes
from .session import _me, set_session_cookies

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
        cur = await conn.execute(
            """UPDATE tablets SET last_seen_at = now()
               WHERE token_hash = %s AND revoked_at IS NULL
               RETURNING id, site_id, name, groups""",
            (auth.token_hash(token),),
        )
        row = await cur.fetchone()
    return Tablet(str(row[0]), row[1], row[2], tuple(row[3] or ())) if row else None


async def audit_tablet(
    request: web.Request, tablet: Tablet, action: str, what: str, detail: dict | None = None
) -> None:
    """Access-log row for what a locked tablet shows (no staff signed in)."""
    async with request.app[POOL].connection() as conn:
        await conn.execute(
            """INSERT INTO audit_log (user_id, username, role, action, purpose, what, site, detail)
               VALUES (NULL, %s, 'tablet', %s, 'nattillsyn', %s, %s, %s)""",
            (
                f"tablet:{tablet.name}",
                action,
                what,
                tablet.site,
                json.dumps(detail) if detail else None,
            ),
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
        cur = await conn.execute("SELECT 1 FROM sites WHERE id = %s", (site,))
        if await cur.fetchone() is None:
            raise ProblemError(422, "Invalid request body", f"site: no unit {site!r}")


async def _create_tablet(
    request: web.Request, site: str, name: str, groups: list[str], by: str
) -> tuple[Tablet, str]:
    token = secrets.token_urlsafe(32)
    await _known_site(request, site)
    async with request.app[POOL].connection() as conn:
        cur = await conn.execute(
            """INSERT INTO tablets (site_id, name, token_hash, groups, enrolled_by)
               VALUES (%s, %s, %s, %s, %s) RETURNING id""",
            (site, name, auth.token_hash(token), groups, by),
        )
        tid = (await cur.fetchone())[0]
    return Tablet(str(tid), site, name, tuple(groups)), token


async def _info(request: web.Request, tablet: Tablet | None) -> TabletInfo:
    cfg = request.app[SETTINGS]
    key = cfg.alerting.vapid_private_key
    vapid = vapid_public_key(key.get_secret_value()) if key else None
    if tablet is None:
        return TabletInfo(
            enrolled=False, auto_lock_s=cfg.tablet.auto_lock_s, vapid_public_key=vapid
        )
    async with request.app[POOL].connection() as conn:
        cur = await conn.execute(
            """SELECT u.username, u.display_name,
                      EXISTS (SELECT 1 FROM tablet_signins s WHERE s.user_id = u.id
                              AND s.tablet_id = %s AND s.signed_in_at > now() - interval '16 hours')
               FROM users u JOIN user_sites us ON us.user_id = u.id
               JOIN staff_pins p ON p.user_id = u.id
               WHERE us.site_id = %s AND u.active AND u.role IN ('night_staff', 'unit_manager')
               ORDER BY 3 DESC, u.display_name LIMIT 60""",
            (tablet.id, tablet.site),
        )
        staff = [
            StaffButton(username=r[0], display_name=r[1], recent=r[2]) for r in await cur.fetchall()
        ]
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


@routes.get("/api/v1/tablet", roles=None, response=TabletInfo)
async def tablet_info(request: web.Request) -> web.Response:
    """This browser as a shared tablet: enrolled?, unit, staff to sign in, auto-lock time."""
    return json_response(await _info(request, await tablet_for(request)))


@routes.post(
    "/api/v1/tablets", roles=MANAGERS, request=TabletEnroll, response=TabletInfo, status=201
)
async def enroll_here(request: web.Request) -> web.Response:
    """Enroll this browser as a shared tablet of a unit (a manager signed in on it)."""
    body = await read_body(request, TabletEnroll)
    user: auth.User = request[USER]
    site = body.site or await request_site(request)
    if not user.may_see(site):
        raise ProblemError(403, "Forbidden", "not a unit of yours")
    tablet, token = await _create_tablet(request, site, body.name, body.groups, user.username)
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
    body = await read_body(request, TabletEnroll)
    user: auth.User = request[USER]
    site = body.site or await request_site(request)
    if not user.may_see(site):
        raise ProblemError(403, "Forbidden", "not a unit of yours")
    await _known_site(request, site)
    code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(10))
    expires = datetime.now(UTC) + timedelta(
        seconds=request.app[SETTINGS].tablet.enrollment_code_ttl_s
    )
    async with request.app[POOL].connection() as conn:
        await conn.execute(
            """INSERT INTO tablet_enrollment_codes (code_hash, site_id, name, groups, created_by,
                                                    expires_at)
               VALUES (%s, %s, %s, %s, %s, %s)""",
            (auth.token_hash(code), site, body.name, body.groups, user.username, expires),
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
        cur = await conn.execute(
            """UPDATE tablet_enrollment_codes SET used_at = now()
               WHERE code_hash = %s AND used_at IS NULL AND expires_at > now()
               RETURNING site_id, name, groups, created_by""",
            (auth.token_hash(body.code.strip().upper()),),
        )
        row = await cur.fetchone()
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
        cur = await conn.execute(
            """SELECT id, name, site_id, groups, enrolled_at, last_seen_at FROM tablets
               WHERE site_id = %s AND revoked_at IS NULL ORDER BY name""",
            (site,),
        )
        rows = await cur.fetchall()
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
    user: auth.User = request[USER]
    async with request.app[POOL].connection() as conn:
        cur = await conn.execute(
            "SELECT site_id FROM tablets WHERE id::text = %s", (request.match_info["tablet_id"],)
        )
        row = await cur.fetchone()
        if row is None or not user.may_see(row[0]):
            raise ProblemError(404, "Not Found", "no such tablet")
        await conn.execute(
            "UPDATE tablets SET revoked_at = now() WHERE id::text = %s",
            (request.match_info["tablet_id"],),
        )
        await conn.execute(
            """DELETE FROM user_sessions WHERE token_hash IN (
                   SELECT token_hash FROM tablet_signins WHERE tablet_id::text = %s)""",
            (request.match_info["tablet_id"],),
        )
    await audit(request, "change", "tablet revoke", site=row[0])
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
            cur = await conn.execute(
                """SELECT 1 FROM user_sessions WHERE token_hash = %s AND provider = 'oidc'
                   AND created_at > now() - interval '15 minutes'""",
                (auth.token_hash(request.cookies.get(auth.COOKIE, "")),),
            )
            if await cur.fetchone() is None:
                raise ProblemError(
                    401, "Unauthorized", "confirm with your password or sign in again (SSO)"
                )
        else:
            cur = await conn.execute("SELECT password_hash FROM users WHERE id = %s", (user.id,))
            row = await cur.fetchone()
            if not auth.verify_password(row[0] if row else None, body.password):
                raise ProblemError(401, "Unauthorized", "wrong password")
        await conn.execute(
            """INSERT INTO staff_pins (user_id, pin_hash) VALUES (%s, %s)
               ON CONFLICT (user_id) DO UPDATE SET pin_hash = EXCLUDED.pin_hash, updated_at = now()""",
            (user.id, auth.hash_password(body.pin)),
        )
    await audit(request, "change", "pin set")
    return web.Response(status=204)


async def _end_signins(conn, tablet_id: str, reason: str) -> None:
    cur = await conn.execute(
        """UPDATE tablet_signins SET ended_at = now(), end_reason = %s
           WHERE tablet_id = %s AND ended_at IS NULL RETURNING token_hash""",
        (reason, tablet_id),
    )
    hashes = [r[0] for r in await cur.fetchall()]
    if hashes:
        await conn.execute("DELETE FROM user_sessions WHERE token_hash = ANY(%s)", (hashes,))


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
        cur = await conn.execute(
            """SELECT u.id, p.pin_hash, u.role,
                      EXISTS (SELECT 1 FROM user_sites us WHERE us.user_id = u.id AND us.site_id = %s),
                      u.auth_provider <> 'password' OR NOT %s,
                      EXISTS (SELECT 1 FROM tablet_sso_signins t
                              WHERE t.user_id = u.id AND t.tablet_id = %s
                                AND t.at > now() - make_interval(secs => %s))
               FROM users u LEFT JOIN staff_pins p ON p.user_id = u.id
               WHERE u.username = %s AND u.active""",
            (
                tablet.site,
                request.app[SETTINGS].oidc.local_passwords,
                tablet.id,
                request.app[SETTINGS].api.session_hours * 3600,
                body.username,
            ),
        )
        row = await cur.fetchone()
        user_id = row[0] if row else None
        cur = await conn.execute(
            """SELECT count(*) FILTER (WHERE user_id = %s), count(*) FROM pin_attempts
               WHERE NOT ok AND at > now() - %s AND (tablet_id = %s OR user_id = %s)""",
            (user_id, window, tablet.id, user_id),
        )
        user_fails, _ = await cur.fetchone()
        cur = await conn.execute(
            "SELECT count(*) FROM pin_attempts WHERE NOT ok AND at > now() - %s AND tablet_id = %s",
            (window, tablet.id),
        )
        tablet_fails = (await cur.fetchone())[0]
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
        await conn.execute(
            "INSERT INTO pin_attempts (tablet_id, user_id, ok) VALUES (%s, %s, %s)",
            (tablet.id, user_id, ok),
        )
        if not ok:
            raise ProblemError(401, "Unauthorized", "wrong user or PIN")
        if row[4] and not row[5]:  # single sign-on staff: PIN only after SSO here this shift
            raise ProblemError(
                403,
                "Forbidden",
                "sign in with your organisation account on this tablet first this shift",
            )
        async with conn.transaction():
            await _end_signins(conn, tablet.id, "switch")
            session = await auth.start_session(
                conn, user_id, cfg.pin_session_s / 3600, provider="pin", client=tablet.name
            )
            await conn.execute(
                "INSERT INTO tablet_signins (token_hash, tablet_id, user_id) VALUES (%s, %s, %s)",
                (auth.token_hash(session.token), tablet.id, user_id),
            )
    request[USER] = session.user
    await audit(request, "login", "tablet pin", site=tablet.site, detail={"tablet": tablet.name})
    resp = json_response(_me(session.user))
    set_session_cookies(request, resp, session)
    return resp


@routes.post("/api/v1/tablet/lock", roles=None, status=204)
async def lock(request: web.Request) -> web.Response:
    """Lock the tablet: the staff session on it ends; alerts keep sounding on the lock screen."""
    tablet = await tablet_for(request)
    token = request.cookies.get(auth.COOKIE)
    async with request.app[POOL].connection() as conn:
        if tablet is not None:
            await _end_signins(conn, tablet.id, "lock")
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
        await conn.execute(
            """UPDATE user_sessions SET expires_at = now() + make_interval(secs => %s)
               WHERE token_hash = %s AND token_hash IN (
                   SELECT token_hash FROM tablet_signins WHERE ended_at IS NULL)""",
            (secs, auth.token_hash(token)),
        )
    return web.Response(status=204)


@routes.post("/api/v1/tablet/push", roles=None, request=PushSubscribe, status=204, problems=(403,))
async def push_subscribe(request: web.Request) -> web.Response:
    """Register this tablet's Web Push subscription (alerts reach a page in the background)."""
    tablet = await tablet_for(request)
    if tablet is None:
        raise ProblemError(403, "Forbidden", "only enrolled tablets receive push")
    body = await read_body(request, PushSubscribe)
    async with request.app[POOL].connection() as conn:
        await conn.execute(
            """INSERT INTO push_subscriptions (endpoint, tablet_id, site_id, p256dh, auth)
               VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (endpoint) DO UPDATE SET tablet_id = EXCLUDED.tablet_id,
                   site_id = EXCLUDED.site_id, p256dh = EXCLUDED.p256dh, auth = EXCLUDED.auth,
                   failed_at = NULL""",
            (body.endpoint, tablet.id, tablet.site, body.p256dh, body.auth),
        )
    return web.Response(status=204)
