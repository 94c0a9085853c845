"""Sign-in: authentication providers, argon2 password hashes, server-side sessions.

Only a SHA-256 of the session token is stored, so a database dump gives no
usable sessions. The cookie is HttpOnly and SameSite=Strict; state-changing
requests must be JSON, must not come from another origin, and (administration)
must echo the session's CSRF token in `X-CSRF-Token`.

Authentication is a seam: a provider turns credentials into a user id; sessions,
roles and unit scoping are the same whatever the provider. `PasswordProvider` is
built in; an OpenID Connect provider (the municipality's single sign-on) plugs in
by mapping the token's `sub` to `users.external_subject` (see docs/admin.md).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from psycopg import AsyncConnection

COOKIE = "nattillsyn_session"
CSRF_COOKIE = "nattillsyn_csrf"
CSRF_HEADER = "X-CSRF-Token"
ROLES = ("night_staff", "unit_manager", "evaluator", "sysadmin")
_hasher = PasswordHasher()
# Verified against when the user does not exist, so timing does not tell.
_DUMMY = _hasher.hash("not a password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_matches(stored_hash: str | None, sent: str | None) -> bool:
    return bool(stored_hash and sent) and hmac.compare_digest(stored_hash, token_hash(sent or ""))


@dataclass(frozen=True)
class User:
    id: str
    username: str
    display_name: str
    role: str
    sites: tuple[str, ...] = ()  # units the user belongs to (a sysadmin reaches every unit)
    csrf_hash: str | None = None  # of the current session

    def may_see(self, site: str) -> bool:
        return self.role == "sysadmin" or site in self.sites

    def own_sites(self) -> list[str] | None:
        """The units to filter on for this user; None: every unit (a sysadmin)."""
        return None if self.role == "sysadmin" else list(self.sites)


_USER = """SELECT u.id, u.username, u.display_name, u.role,
                  coalesce(array_agg(us.site_id ORDER BY us.site_id)
                           FILTER (WHERE us.site_id IS NOT NULL), '{}')
           FROM users u LEFT JOIN user_sites us ON us.user_id = u.id"""


def _user(row, csrf_hash: str | None = None) -> User:
    return User(str(row[0]), row[1], row[2], row[3], tuple(row[4]), csrf_hash)


# -- providers ------------------------------------------------------------------


class AuthProvider(Protocol):
    """Turns what a person presents into the id of an active user, or None."""

    name: str

    async def authenticate(self, conn: AsyncConnection, credentials: dict) -> str | None: ...


class PasswordProvider:
    """User name and password, checked against the argon2 hash in `users`."""

    name = "password"

    async def authenticate(self, conn: AsyncConnection, credentials: dict) -> str | None:
        cur = await conn.execute(
            "SELECT id, password_hash FROM users "
            "WHERE username = %s AND active AND auth_provider = 'password'",
            (credentials.get("username", ""),),
        )
        row = await cur.fetchone()
        if not verify_password(row[1] if row else None, credentials.get("password", "")):
            return None
        assert row is not None
        if _hasher.check_needs_rehash(row[1]):  # parameters were raised since
            await conn.execute(
                "UPDATE users SET password_hash = %s WHERE id = %s",
                (hash_password(credentials["password"]), row[0]),
            )
        return str(row[0])


PROVIDERS: dict[str, AuthProvider] = {"password": PasswordProvider()}


async def password_matches(conn: AsyncConnection, user_id: str, password: str) -> bool:
    """The user's current password (to confirm a sensitive change)."""
    cur = await conn.execute("SELECT password_hash FROM users WHERE id = %s", (user_id,))
    row = await cur.fetchone()
    return verify_password(row[0] if row else None, password)


# -- sessions ---------------------------------------------------------------------


@dataclass(frozen=True)
class NewSession:
    user: User
    token: str  # goes in the HttpOnly cookie
    csrf: str  # goes in a readable cookie; the page echoes it in X-CSRF-Token


async def start_session(
    conn: AsyncConnection, user_id: str, hours: float, provider: str = "password", client: str = ""
) -> NewSession:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    await conn.execute(
        """INSERT INTO user_sessions (token_hash, user_id, expires_at, csrf_hash, provider, client)
           VALUES (%s, %s, %s, %s, %s, %s)""",
        (
            token_hash(token),
            user_id,
            datetime.now(UTC) + timedelta(hours=hours),
            token_hash(csrf),
            provider,
            client[:100],
        ),
    )
    cur = await conn.execute(f"{_USER} WHERE u.id = %s GROUP BY u.id", (user_id,))
    return NewSession(_user(await cur.fetchone(), token_hash(csrf)), token, csrf)


async def login(
    conn: AsyncConnection, username: str, password: str, hours: float
) -> tuple[User, str] | None:
    """Check the password; on success a new session token (to put in the cookie)."""
    user_id = await PROVIDERS["password"].authenticate(
        conn, {"username": username, "password": password}
    )
    if user_id is None:
        return None
    s = await start_session(conn, user_id, hours)
    return s.user, s.token


async def user_for(conn: AsyncConnection, token: str) -> User | None:
    cur = await conn.execute(
        """SELECT u.id, u.username, u.display_name, u.role,
                  coalesce(array_agg(us.site_id ORDER BY us.site_id)
                           FILTER (WHERE us.site_id IS NOT NULL), '{}'),
                  s.csrf_hash
           FROM user_sessions s JOIN users u ON u.id = s.user_id
           LEFT JOIN user_sites us ON us.user_id = u.id
           WHERE s.token_hash = %s AND s.expires_at > now() AND u.active
           GROUP BY u.id, s.csrf_hash""",
        (token_hash(token),),
    )
    row = await cur.fetchone()
    return _user(row, row[5]) if row else None


async def logout(conn: AsyncConnection, token: str) -> None:
    await conn.execute("DELETE FROM user_sessions WHERE token_hash = %s", (token_hash(token),))


async def end_sessions(conn: AsyncConnection, user_id: str) -> None:
    """Sign a user out everywhere (deactivated, role or units changed, password reset)."""
    await conn.execute("DELETE FROM user_sessions WHERE user_id = %s", (user_id,))


# -- throttling -------------------------------------------------------------------


async def throttle_wait(
    conn: AsyncConnection,
    username: str,
    client: str,
    *,
    window_s: float,
    per_user: int,
    per_client: int,
) -> float:
    """Seconds until another sign-in may be tried (0: go ahead).

    Failures are counted per user name (guessing one account) and per client
    address (trying many accounts) within a sliding window.
    """
    cur = await conn.execute(
        """SELECT count(*) FILTER (WHERE username = %(u)s),
                  min(at) FILTER (WHERE username = %(u)s),
                  count(*) FILTER (WHERE client = %(c)s),
                  min(at) FILTER (WHERE client = %(c)s)
           FROM login_failures
           WHERE at > now() - make_interval(secs => %(w)s)
             AND (username = %(u)s OR client = %(c)s)""",
        {"u": username, "c": client, "w": window_s},
    )
    n_user, first_user, n_client, first_client = await cur.fetchone()
    now = datetime.now(UTC)
    waits = [0.0]
    for n, first, limit in ((n_user, first_user, per_user), (n_client, first_client, per_client)):
        if n >= limit and first is not None:
            waits.append(max(1.0, window_s - (now - first).total_seconds()))
    return max(waits)


async def record_failure(conn: AsyncConnection, username: str, client: str) -> None:
    await conn.execute(
        "INSERT INTO login_failures (username, client) VALUES (%s, %s)", (username[:64], client)
    )
    # Keep the table small: old failures tell nothing.
    await conn.execute("DELETE FROM login_failures WHERE at < now() - interval '1 day'")


async def clear_failures(conn: AsyncConnection, username: str) -> None:
    await conn.execute("DELETE FROM login_failures WHERE username = %s", (username,))
