"""OpenID Connect sign-in: authorisation code flow with PKCE, state and nonce.

The browser goes to `/sso/login?next=/admin`, on to the provider, and back to
`/sso/callback`. The callback takes the started sign-in out of
`oidc_logins` (single use: a replayed callback finds nothing), exchanges the code,
validates the ID token with joserfc (issuer, audience, expiry, nonce, signature from the
provider's JWKS, fetched again once when a token names an unknown key: rotation), maps
its claims to a role and units (`claims.py`), provisions or updates the account and
starts the same session a password sign-in does. Every sign-in and refusal is a `login`
row in the access log with the provider's subject id.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import secrets
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
from aiohttp import web
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact
from psycopg import AsyncConnection

from nattillsyn import log
from nattillsyn.clock import SYSTEM, Clock
from nattillsyn.settings.oidc import OidcSettings

from . import auth
from .claims import Mapping, Refused, usable
from .queries import accounts
from .queries.audit import log_access

logger = log.get(__name__)
STATE_COOKIE = "nattillsyn_oidc_state"
CALLBACK = "/sso/callback"
# Where a sign-in may return to: the three pages.
PAGES = {"/": "Surfplattan", "/admin": "Administration", "/report": "Utvärdering"}
PROVIDER = "oidc"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pkce_challenge(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode()).digest())


# -- the provider ----------------------------------------------------------------


class OidcClient:
    """Discovery, JWKS (cached; refetched on an unknown key id), code exchange, validation."""

    def __init__(self, settings: OidcSettings, clock: Clock = SYSTEM) -> None:
        self.s = settings
        self.clock = clock
        self._http: aiohttp.ClientSession | None = None
        self._meta: tuple[float, dict] | None = None
        self._keys: tuple[float, KeySet] | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.s.http_timeout_s)
            )
        return self._http

    async def _get_json(self, url: str) -> dict:
        try:
            async with self._session().get(url, headers={"Accept": "application/json"}) as r:
                r.raise_for_status()
                return await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise _unreachable("the identity provider", exc) from None

    async def metadata(self) -> dict:
        now = self.clock.monotonic()
        if self._meta is None or now - self._meta[0] > self.s.metadata_ttl_s:
            assert self.s.issuer is not None
            meta = await self._get_json(
                self.s.issuer.rstrip("/") + "/.well-known/openid-configuration"
            )
            if meta.get("issuer") != self.s.issuer:
                raise Refused(
                    "wrong_issuer",
                    "Inloggningstjänsten är felkonfigurerad (fel utfärdare).",
                    f"discovery names issuer {meta.get('issuer')!r}, not {self.s.issuer!r}",
                    502,
                )
            self._meta = (now, meta)
        return self._meta[1]

    async def keys(self, refresh: bool = False) -> KeySet:
        async with self._lock:
            now = self.clock.monotonic()
            if refresh or self._keys is None or now - self._keys[0] > self.s.metadata_ttl_s:
                jwks = await self._get_json((await self.metadata())["jwks_uri"])
                self._keys = (now, KeySet.import_key_set(jwks))
            return self._keys[1]

    async def exchange(self, code: str, verifier: str, redirect_uri: str) -> dict:
        meta = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        headers = {"Accept": "application/json"}
        if self.s.client_secret:  # client_secret_basic, each part form-encoded (RFC 6749 2.3.1)
            pair = f"{quote(self.s.client_id, safe='')}:{quote(self.s.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = self.s.client_id
        try:
            async with self._session().post(
                meta["token_endpoint"], data=form, headers=headers
            ) as r:
                body = await r.json(content_type=None)
                if r.status != 200:
                    raise Refused(
                        "token_error",
                        "Inloggningstjänsten godtog inte inloggningen. Börja om.",
                        f"token endpoint answered {r.status}: {body.get('error')} "
                        f"{body.get('error_description', '')}",
                        400,
                    )
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise _unreachable("the token endpoint", exc) from None

    async def validate(self, id_token: str, nonce: str) -> dict:
        """The ID token's claims, or Refused saying what was wrong."""
        try:
            kid = extract_compact(id_token.encode()).headers().get("kid")
        except (JoseError, ValueError):
            raise _bad("malformed_token", "the ID token is not a compact JWS") from None
        keys = await self.keys()
        if kid is not None and not any(k.kid == kid for k in keys):
            keys = await self.keys(refresh=True)  # the provider rotated its keys
        try:
            token = jwt.decode(id_token, keys, algorithms=self.s.algorithms)
        except InvalidKeyIdError:
            raise _bad("unknown_key", f"no key {kid!r} in the provider's JWKS") from None
        except BadSignatureError:
            raise _bad("bad_signature", "the ID token's signature is not valid") from None
        except (JoseError, ValueError) as exc:
            raise _bad("malformed_token", f"the ID token could not be read: {exc}") from None
        claims = dict(token.claims)
        registry = jwt.JWTClaimsRegistry(
            leeway=int(self.s.leeway_s),
            iss={"essential": True, "value": self.s.issuer},
            aud={"essential": True, "value": self.s.client_id},
            exp={"essential": True},
            iat={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise _bad("expired_token", "the ID token has expired", claims) from None
        except (InvalidClaimError, MissingClaimError) as exc:
            claim = getattr(exc, "claim", "") or str(exc)
            code = {"aud": "wrong_audience", "iss": "wrong_issuer", "nonce": "wrong_nonce"}.get(
                claim, "invalid_claims"
            )
            raise _bad(code, f"ID token claim check failed: {exc}", claims) from None
        except JoseError as exc:
            raise _bad("invalid_claims", f"ID token claim check failed: {exc}", claims) from None
        azp = claims.get("azp")
        if (
            isinstance(claims.get("aud"), list)
            and len(claims["aud"]) > 1
            and azp != self.s.client_id
        ):
            raise _bad("wrong_audience", "the ID token was issued to another client", claims)
        return claims


def _bad(code: str, en: str, claims: dict | None = None) -> Refused:
    return Refused(
        code,
        "Inloggningen kunde inte bekräftas (ogiltig identitetsbiljett). Börja om; "
        "kontakta IT om det upprepas.",
        en,
        401,
        claims,
    )


CLIENT = web.AppKey("oidc_client", OidcClient)


def client_of(app: web.Application) -> OidcClient:
    return app[CLIENT]


async def close_client(app: web.Application) -> None:
    if CLIENT in app:
        await app[CLIENT].close()


# -- accounts ---------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    id: str
    username: str
    role: str


async def refuse(conn: AsyncConnection, issuer: str, claims: dict, m: Mapping) -> Refused:
    """The refusal of claims that give no usable role; an existing account is deactivated."""
    user_id = await accounts.deactivate(conn, f"{PROVIDER}:{issuer}", str(claims["sub"]))
    if user_id is not None:
        await auth.end_sessions(conn, user_id)
    return m.refusal(claims, deactivated=user_id is not None)


async def provision(
    conn: AsyncConnection, issuer: str, claims: dict, m: Mapping, username_claim: str
) -> Account:
    """Make or update the account of `(oidc:<issuer>, sub)` (just in time); Refused if off."""
    provider = f"{PROVIDER}:{issuer}"
    sub = str(claims["sub"])
    row = await accounts.find(conn, provider, sub)
    if not usable(m):
        raise m.refusal(claims)  # refuse() deactivates first
    display = str(claims.get("name") or claims.get(username_claim) or sub)[:200]
    if row is None:
        wanted = str(claims.get(username_claim) or claims.get("email") or sub)[:60]
        taken = await accounts.username_taken(conn, wanted)
        username = f"{wanted}-{secrets.token_hex(3)}" if taken else wanted
        user_id = await accounts.create(conn, username, display, m.role, provider, sub)
    else:
        user_id, username = str(row[0]), row[1]
        changed = row[3] != m.role
        await accounts.update(conn, user_id, display, m.role)
        changed = changed or await accounts.sites(conn, user_id) != sorted(m.sites)
        if changed:  # role or units changed at the provider: old sessions end
            await auth.end_sessions(conn, user_id)
    await accounts.set_sites(conn, user_id, m.sites)
    return Account(user_id, username, m.role)


async def audit_login(
    conn: AsyncConnection, issuer: str | None, claims: dict, client: str, outcome: Account | Refused
) -> None:
    """A `login` row for a sign-in (the account) or a refusal, with the provider's subject."""
    detail = {"provider": PROVIDER, "issuer": issuer, "sub": claims.get("sub"), "client": client}
    if isinstance(outcome, Account):
        who, user_id, role, purpose = outcome.username, outcome.id, outcome.role, "sign-in"
    else:
        detail |= {"refused": outcome.code, "message": outcome.en}
        who = claims.get("preferred_username") or claims.get("sub") or "(okänd)"
        user_id, role, purpose = None, "-", "sign-in refused"
    await log_access(
        conn,
        user_id=user_id,
        username=str(who)[:100],
        role=role,
        action="login",
        purpose=purpose,
        what="session",
        detail=detail,
    )


# -- pages ------------------------------------------------------------------------


def refusal_page(err: Refused, back: str) -> web.Response:
    title = "Inloggningen nekades" if err.status == 403 else "Inloggningen misslyckades"
    body = f"""<!doctype html>
<html lang="sv"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – nattillsyn</title>
<link rel="stylesheet" href="/static/app.css"></head>
<body><main class="card" id="sso-refused" data-reason="{html.escape(err.code)}">
<h1>{title}</h1>
<p lang="sv" id="sso-message">{html.escape(err.sv)}</p>
<p lang="en"><small>Sign-in refused: {html.escape(err.en)}</small></p>
<p><small>Kod / code: {html.escape(err.code)}</small></p>
<p><a href="{html.escape(back)}">Tillbaka till inloggningen / Back to sign-in</a></p>
</main></body></html>"""
    return web.Response(text=body, status=err.status, content_type="text/html")


def safe_next(value: str | None) -> str:
    return value if value in PAGES else "/"


def _unreachable(what: str, exc: BaseException) -> Refused:
    return Refused(
        "provider_unreachable",
        "Inloggningstjänsten svarar inte. Försök igen om en stund.",
        f"{what} did not answer: {exc}",
        502,
    )
