"""What request handlers share: app keys, the signed-in user, the access log."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import Topics
from nattillsyn.settings import Settings

from .auth import COOKIE, CSRF_HEADER, User, csrf_matches, user_for
from .live import LiveHub
from .problems import ProblemError
from .pusher import ConfigPusher
from .queries.audit import log_access

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", AsyncConnectionPool)
HUB = web.AppKey("hub", LiveHub)
MQTT = web.AppKey("mqtt", MqttClient)
TOPICS = web.AppKey("topics", Topics)
USER = web.RequestKey("user", User)
PUSHER = web.AppKey("pusher", ConfigPusher)

B = TypeVar("B", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def current_user(request: web.Request) -> User:
    """The signed-in user, or a 401 problem."""
    token = request.cookies.get(COOKIE)
    if token:
        async with request.app[POOL].connection() as conn:
            user = await user_for(conn, token)
        if user is not None:
            return user
    raise ProblemError(401, "Unauthorized", "sign in first")


def require(*roles: str) -> Callable[[Handler], Handler]:
    """Handler decorator: signed in, with one of `roles` (any role if none given)."""

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            user = await current_user(request)
            if roles and user.role not in roles:
                raise ProblemError(403, "Forbidden", f"role {user.role} may not do this")
            request[USER] = user
            return await handler(request)

        guarded.__name__ = handler.__name__
        guarded.__doc__ = handler.__doc__
        return guarded

    return wrap


async def request_site(request: web.Request) -> str:
    """The unit a request is about: `?site=`, else the user's first unit; 403 if not theirs."""
    user: User = request[USER]
    site = request.query.get("site") or (user.sites[0] if user.sites else None)
    if site is None and user.role == "sysadmin":
        site = request.app[SETTINGS].site
    if site is None or not user.may_see(site):
        raise ProblemError(403, "Forbidden", "not a unit of yours")
    return site


async def read_body(request: web.Request, model: type[B]) -> B:
    """Parse a JSON body (required: a cross-site form cannot send one)."""
    if request.content_type != "application/json":
        raise ProblemError(415, "Unsupported Media Type", "send application/json")
    try:
        raw = await request.json() if request.can_read_body else {}
    except json.JSONDecodeError as exc:
        raise ProblemError(400, "Bad Request", f"invalid JSON: {exc}") from None
    if _has_nul(raw):  # PostgreSQL text cannot hold NUL: refuse it up front
        raise ProblemError(422, "Invalid request body", "strings must not contain NUL characters")
    return model.model_validate(raw)  # ValidationError → 422 in the problem middleware


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def json_response(model: BaseModel | list, status: int = 200) -> web.Response:
    if isinstance(model, list):
        text = "[" + ",".join(m.model_dump_json(exclude_none=True) for m in model) + "]"
    else:
        text = model.model_dump_json(exclude_none=True)
    return web.Response(text=text, status=status, content_type="application/json")


UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@web.middleware
async def same_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse NUL in URLs, and (CSRF) state-changing requests a browser marks cross-site.

    Browsers send `Sec-Fetch-Site` and `Origin` on such requests and a page cannot
    forge them; clients that send neither (the Pi, scripts) are not browsers.
    """
    if "\x00" in request.path or "\x00" in request.query_string or "%00" in request.raw_path:
        raise ProblemError(400, "Bad Request", "NUL characters are not allowed in the URL")
    if request.method in UNSAFE and request.path.startswith("/api/"):
        site = request.headers.get("Sec-Fetch-Site")
        origin = request.headers.get("Origin")
        allowed = request.app[SETTINGS].api.allowed_origins
        if site in ("cross-site", "same-site") and origin not in allowed:
            raise ProblemError(403, "Forbidden", "cross-site request refused")
        if origin is not None and origin not in allowed:
            parts = urlsplit(origin)
            if origin == "null" or parts.netloc != request.host:
                raise ProblemError(403, "Forbidden", "request from another origin refused")
    return await handler(request)


def check_csrf_token(request: web.Request) -> None:
    """The session's CSRF token must come back in `X-CSRF-Token` (administration)."""
    if request.method in UNSAFE and not csrf_matches(
        request[USER].csrf_hash, request.headers.get(CSRF_HEADER)
    ):
        raise ProblemError(403, "Forbidden", f"missing or wrong {CSRF_HEADER} header")


async def audit(
    request: web.Request,
    action: str,
    what: str,
    *,
    purpose: str = "nattillsyn",
    site: str | None = None,
    room: str | None = None,
    detail: dict | None = None,
    conn: AsyncConnection | None = None,
) -> None:
    """One row in the append-only access log: who, when, why, what.

    Pass `conn` to write it in the caller's transaction (a change and its log row
    commit together).
    """
    user: User = request[USER]
    row = {
        "user_id": user.id,
        "username": user.username,
        "role": user.role,
        "action": action,
        "purpose": purpose,
        "what": what,
        "site": site,
        "room": room,
        "detail": detail,
    }
    if conn is not None:
        await log_access(conn, **row)
        return
    async with request.app[POOL].connection() as c:
        await log_access(c, **row)


async def record_change(
    conn: AsyncConnection,
    request: web.Request,
    entity: str,
    entity_id: str,
    change: str,
    before: dict | None,
    after: dict | None,
    *,
    site: str | None = None,
) -> None:
    """A version of an administered thing: who changed it, when, before and after."""
    user: User = request[USER]
    await conn.execute(
        """INSERT INTO change_history (user_id, username, role, entity, entity_id, site, change,
                                       before, after)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            user.id,
            user.username,
            user.role,
            entity,
            entity_id,
            site,
            change,
            Jsonb(before, dumps=_dumps) if before is not None else None,
            Jsonb(after, dumps=_dumps) if after is not None else None,
        ),
    )


def _dumps(obj) -> str:
    return json.dumps(obj, default=str)
