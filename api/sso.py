"""Single sign-on routes: start, callback, logout (RP-initiated), and what the pages offer.

These are browser navigations (redirects and an HTML refusal page), so they live under
`/sso/`, outside the JSON api and its OpenAPI document; `GET /api/v1/login/options` is in it.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

from aiohttp import web
from prometheus_client import Counter
from pydantic import BaseModel, Field

from . import auth, oidc
from .claims import map_claims, usable
from .context import POOL, SETTINGS, json_response
from .queries import sso as db
from .queries.audit import log_access
from .queries.tablets import record_sso_signin
from .routing import Routes
from .session import client_address, set_session_cookies
from .shared_tablets import start_tablet_session, tablet_for

routes = Routes("session")
pages = web.RouteTableDef()
SSO_COOKIE = "nattillsyn_sso"
SIGNINS = Counter(
    "nattillsyn_api_sso_signins_total",
    "Single sign-on callbacks by result (ok, or the refusal code)",
    ["result"],
)


class LoginOptions(BaseModel):
    sso: bool = Field(description="Single sign-on is configured.")
    sso_name: str = Field(description="What the sign-in button names.")
    local_passwords: bool = Field(description="User name + password sign-in is allowed.")


@routes.get("/api/v1/login/options", roles=None, response=LoginOptions)
async def login_options(request: web.Request) -> web.Response:
    """How one may sign in here (single sign-on, local passwords)."""
    s = request.app[SETTINGS].oidc
    return json_response(
        LoginOptions(sso=s.enabled, sso_name=s.display_name, local_passwords=s.local_passwords)
    )


def _redirect(url: str) -> web.Response:
    return web.Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})


def _redirect_uri(request: web.Request) -> str:
    s = request.app[SETTINGS].oidc
    return s.redirect_url or f"{request.scheme}://{request.host}{oidc.CALLBACK}"


@pages.get("/sso/login")
async def begin(request: web.Request) -> web.StreamResponse:
    """Start a sign-in at the provider (code flow, PKCE S256, state, nonce)."""
    s = request.app[SETTINGS].oidc
    back = oidc.safe_next(request.query.get("next"))
    if not s.enabled:
        return oidc.refusal_page(
            oidc.Refused(
                "sso_off",
                "Inloggning med organisationens konto är inte påslagen här.",
                "single sign-on is not configured",
                404,
            ),
            back,
        )
    try:
        meta = await oidc.client_of(request.app).metadata()
    except oidc.Refused as err:
        return oidc.refusal_page(err, back)
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    redirect_uri = _redirect_uri(request)
    async with request.app[POOL].connection() as conn:
        await db.start_login(
            conn, auth.token_hash(state), nonce, verifier, back, redirect_uri, s.login_timeout_s
        )
    params = {
        "response_type": "code",
        "client_id": s.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(s.scopes),
        "state": state,
        "nonce": nonce,
        "code_challenge": oidc.pkce_challenge(verifier),
        "code_challenge_method": "S256",
    }
    if back == "/":  # a shared tablet: never reuse the previous person's provider session
        params["prompt"] = "login"
    resp = _redirect(f"{meta['authorization_endpoint']}?{urlencode(params)}")
    # Binds the sign-in to this browser; Lax: it must come back on the provider's redirect.
    resp.set_cookie(
        oidc.STATE_COOKIE,
        state,
        httponly=True,
        samesite="Lax",
        secure=request.app[SETTINGS].api.cookie_secure,
        max_age=int(s.login_timeout_s),
        path=oidc.CALLBACK,
    )
    return resp


@pages.get(oidc.CALLBACK)
async def callback(request: web.Request) -> web.StreamResponse:
    """The provider sends the browser back here with a code (or an error)."""
    settings = request.app[SETTINGS]
    s = settings.oidc
    client = client_address(request)
    state = request.query.get("state", "")
    claims: dict = {}
    back = "/"
    async with request.app[POOL].connection() as conn:
        try:
            if not s.enabled:
                raise oidc.Refused(
                    "sso_off",
                    "Inloggning med organisationens konto är inte påslagen här.",
                    "single sign-on is not configured",
                    404,
                )
            row = await db.take_login(conn, auth.token_hash(state), s.login_timeout_s)
            if row is None:
                raise oidc.Refused(
                    "replayed_state",
                    "Den här inloggningslänken är redan använd eller okänd. Börja om från "
                    "inloggningen.",
                    "unknown or already used state (a replayed or forged callback)",
                    400,
                )
            nonce, verifier, back, redirect_uri, fresh = row
            if not fresh:
                raise oidc.Refused(
                    "login_timeout",
                    "Inloggningen tog för lång tid. Börja om.",
                    "the sign-in was started too long ago",
                    400,
                )
            if request.cookies.get(oidc.STATE_COOKIE) != state:
                raise oidc.Refused(
                    "state_mismatch",
                    "Inloggningen startades i en annan webbläsare. Börja om här.",
                    "the state does not belong to this browser",
                    400,
                )
            if "error" in request.query:
                raise oidc.Refused(
                    "provider_error",
                    "Inloggningstjänsten avbröt inloggningen.",
                    f"the provider answered {request.query['error']}: "
                    f"{request.query.get('error_description', '')}",
                    403,
                )
            code = request.query.get("code")
            if not code:
                raise oidc.Refused(
                    "no_code", "Inloggningen saknar kod. Börja om.", "no code in callback", 400
                )
            client_ = oidc.client_of(request.app)
            tokens = await client_.exchange(code, verifier, redirect_uri)
            if not isinstance(tokens.get("id_token"), str):
                raise oidc.Refused(
                    "no_id_token",
                    "Inloggningstjänsten skickade ingen identitetsbiljett.",
                    "no id_token in the token response",
                    502,
                )
            claims = await client_.validate(tokens["id_token"], nonce)
            mapping = map_claims(s, claims)
            if not usable(mapping):
                raise await oidc.refuse(conn, s.issuer, claims, mapping)
            tablet = await tablet_for(request)
            async with conn.transaction():
                account = await oidc.provision(conn, s.issuer, claims, mapping, s.username_claim)
                if tablet is not None:  # a shared tablet: quick switch and auto-lock as PINs
                    session = await start_tablet_session(
                        conn,
                        tablet,
                        account.id,
                        oidc.PROVIDER,
                        settings.tablet.pin_session_s / 3600,
                    )
                    await record_sso_signin(conn, tablet.id, account.id)
                else:
                    session = await auth.start_session(
                        conn, account.id, settings.api.session_hours, oidc.PROVIDER, client
                    )
                await oidc.audit_login(conn, s.issuer, claims, client, account)
        except oidc.Refused as err:
            claims = err.claims or claims
            await oidc.audit_login(conn, s.issuer, claims, client, err)
            oidc.logger.warning("single sign-on refused", reason=err.code, sub=claims.get("sub"))
            SIGNINS.labels(err.code).inc()
            resp = oidc.refusal_page(err, back)
            resp.del_cookie(oidc.STATE_COOKIE, path=oidc.CALLBACK)
            return resp
    oidc.logger.info("single sign-on", sub=claims.get("sub"), role=session.user.role)
    SIGNINS.labels("ok").inc()
    resp = _redirect(back)
    set_session_cookies(request, resp, session)
    # Tells the page's "Logga ut" to sign out at the provider too (no secret in it).
    resp.set_cookie(
        SSO_COOKIE,
        "1",
        samesite="Strict",
        secure=settings.api.cookie_secure,
        max_age=int(settings.api.session_hours * 3600),
        path="/",
    )
    resp.del_cookie(oidc.STATE_COOKIE, path=oidc.CALLBACK)
    return resp


@pages.get("/sso/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    """End the session here, then at the provider (RP-initiated logout) where it offers it."""
    s = request.app[SETTINGS].oidc
    back = oidc.safe_next(request.query.get("next"))
    token = request.cookies.get(auth.COOKIE)
    if token:
        async with request.app[POOL].connection() as conn:
            user = await auth.user_for(conn, token)
            await auth.logout(conn, token)
            if user is not None:
                await log_access(
                    conn,
                    user_id=user.id,
                    username=user.username,
                    role=user.role,
                    action="logout",
                    purpose="sign-out",
                    what="session",
                )
    target = back
    if s.enabled:
        try:
            meta = await oidc.client_of(request.app).metadata()
        except oidc.Refused:
            meta = {}
        end = meta.get("end_session_endpoint")
        if end:
            target = f"{end}?" + urlencode(
                {
                    "client_id": s.client_id,
                    "post_logout_redirect_uri": f"{request.scheme}://{request.host}{back}",
                }
            )
    resp = _redirect(target)
    resp.del_cookie(auth.COOKIE, path="/")
    resp.del_cookie(auth.CSRF_COOKIE, path="/")
    resp.del_cookie(SSO_COOKIE, path="/")
    return resp
