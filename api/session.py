"""Sign in, sign out, who am I."""

from __future__ import annotations

from aiohttp import web

from . import auth
from .context import POOL, SETTINGS, USER, json_response, read_body
from .models import LoginRequest, Me
from .problems import ProblemError
from .routing import Routes

routes = Routes("session")


def _me(user: auth.User) -> Me:
    return Me(
        username=user.username,
        display_name=user.display_name,
        role=user.role,  # type: ignore[arg-type]
        sites=list(user.sites),
    )


@routes.post("/api/v1/login", roles=None, request=LoginRequest, response=Me)
async def login(request: web.Request) -> web.Response:
    """Sign in with user name and password; sets the session cookie."""
    body = await read_body(request, LoginRequest)
    settings = request.app[SETTINGS]
    async with request.app[POOL].connection() as conn:
        result = await auth.login(conn, body.username, body.password, settings.api.session_hours)
    if result is None:
        raise ProblemError(401, "Unauthorized", "wrong user name or password")
    user, token = result
    resp = json_response(_me(user))
    resp.set_cookie(
        auth.COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=settings.api.cookie_secure,
        max_age=int(settings.api.session_hours * 3600),
        path="/",
    )
    return resp


@routes.post("/api/v1/logout", status=204)
async def logout(request: web.Request) -> web.Response:
    """End the session."""
    async with request.app[POOL].connection() as conn:
        await auth.logout(conn, request.cookies[auth.COOKIE])
    resp = web.Response(status=204)
    resp.del_cookie(auth.COOKIE, path="/")
    return resp


@routes.get("/api/v1/me", response=Me)
async def me(request: web.Request) -> web.Response:
    """The signed-in user."""
    return json_response(_me(request[USER]))
