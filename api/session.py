"""Sign in, sign out, who am I: throttled, audited, with a CSRF token per session."""

from __future__ import annotations

from aiohttp import web

from . import auth
from .context import POOL, SETTINGS, USER, audit, json_response, read_body
from .models import LoginRequest, Me
from .problems import ProblemError
from .routing import Routes

routes = Routes("session")


def me_of(user: auth.User) -> Me:
    """The `Me` body of a signed-in user."""
    return Me(
        username=user.username,
        display_name=user.display_name,
        role=user.role,  # type: ignore[arg-type]
        sites=list(user.sites),
    )


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def set_session_cookies(request: web.Request, resp: web.StreamResponse, s: auth.NewSession) -> None:
    """The session token HttpOnly; the CSRF token readable by the page (it echoes it)."""
    api = request.app[SETTINGS].api
    for name, value, httponly in ((auth.COOKIE, s.token, True), (auth.CSRF_COOKIE, s.csrf, False)):
        resp.set_cookie(
            name,
            value,
            httponly=httponly,
            samesite="Strict",
            secure=api.cookie_secure,
            max_age=int(api.session_hours * 3600),
            path="/",
        )


@routes.post(
    "/api/v1/login", roles=None, request=LoginRequest, response=Me, problems=(401, 403, 429)
)
async def login(request: web.Request) -> web.Response:
    """Sign in with user name and password; sets the session cookie."""
    body = await read_body(request, LoginRequest)
    api = request.app[SETTINGS].api
    if not request.app[SETTINGS].oidc.local_passwords:
        raise ProblemError(
            403, "Forbidden", "local passwords are off here: sign in with the organisation account"
        )
    client = client_address(request)
    async with request.app[POOL].connection() as conn:
        wait = await auth.throttle_wait(
            conn,
            body.username,
            client,
            window_s=api.login_window_s,
            per_user=api.login_max_failures_user,
            per_client=api.login_max_failures_client,
        )
        if wait > 0:
            err = ProblemError(
                429, "Too Many Requests", "too many failed sign-ins; try again later"
            )
            err.response.headers["Retry-After"] = str(int(wait) + 1)
            raise err
        user_id = await auth.PROVIDERS["password"].authenticate(conn, body.model_dump())
        if user_id is None:
            await auth.record_failure(conn, body.username, client)
            raise ProblemError(401, "Unauthorized", "wrong user name or password")
        await auth.clear_failures(conn, body.username)
        session = await auth.start_session(conn, user_id, api.session_hours, "password", client)
    request[USER] = session.user
    await audit(request, "login", "session", purpose="sign-in", detail={"client": client})
    resp = json_response(me_of(session.user))
    set_session_cookies(request, resp, session)
    resp.del_cookie("nattillsyn_sso", path="/")  # a password session: no provider logout
    return resp


@routes.post("/api/v1/logout", status=204)
async def logout(request: web.Request) -> web.Response:
    """End the session."""
    async with request.app[POOL].connection() as conn:
        await auth.logout(conn, request.cookies[auth.COOKIE])
    await audit(request, "logout", "session", purpose="sign-out")
    resp = web.Response(status=204)
    resp.del_cookie(auth.COOKIE, path="/")
    resp.del_cookie(auth.CSRF_COOKIE, path="/")
    resp.del_cookie("nattillsyn_sso", path="/")
    return resp


@routes.get("/api/v1/me", response=Me)
async def me(request: web.Request) -> web.Response:
    """The signed-in user."""
    return json_response(me_of(request[USER]))
