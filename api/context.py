"""What request handlers share: app keys, the signed-in user, the access log."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from nattillsyn.mqtt import MqttClient
from nattillsyn.protocol import Topics
from nattillsyn.settings import Settings

from .auth import COOKIE, User, user_for
from .live import LiveHub
from .problems import ProblemError

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", AsyncConnectionPool)
HUB = web.AppKey("hub", LiveHub)
MQTT = web.AppKey("mqtt", MqttClient)
TOPICS = web.AppKey("topics", Topics)
USER = web.RequestKey("user", User)

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
    return model.model_validate(raw)  # ValidationError → 422 in the problem middleware


def json_response(model: BaseModel | list, status: int = 200) -> web.Response:
    if isinstance(model, list):
        text = "[" + ",".join(m.model_dump_json(exclude_none=True) for m in model) + "]"
    else:
        text = model.model_dump_json(exclude_none=True)
    return web.Response(text=text, status=status, content_type="application/json")


async def audit(
    request: web.Request,
    action: str,
    what: str,
    *,
    purpose: str = "nattillsyn",
    site: str | None = None,
    room: str | None = None,
    detail: dict | None = None,
) -> None:
    """One row in the append-only access log: who, when, why, what."""
    user: User = request[USER]
    async with request.app[POOL].connection() as conn:
        await conn.execute(
            """INSERT INTO audit_log (user_id, username, role, action, purpose, what, site, room,
                                      detail)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                user.id,
                user.username,
                user.role,
                action,
                purpose,
                what,
                site,
                room,
                json.dumps(detail) if detail else None,
            ),
        )
