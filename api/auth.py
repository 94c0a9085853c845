"""Sign-in: argon2 password hashes, server-side sessions in an HttpOnly cookie.

Only a SHA-256 of the session token is stored, so a database dump gives no
usable sessions. The cookie is SameSite=Strict and state-changing requests must
be JSON, which a cross-site form cannot send: together the CSRF protection.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from psycopg import AsyncConnection

COOKIE = "nattillsyn_session"
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


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class User:
    id: str
    username: str
    display_name: str
    role: str
    sites: tuple[str, ...] = ()  # units the user belongs to (a sysadmin reaches every unit)

    def may_see(self, site: str) -> bool:
        return self.role == "sysadmin" or site in self.sites


_USER = """SELECT u.id, u.username, u.display_name, u.role,
                  coalesce(array_agg(us.site_id ORDER BY us.site_id)
                           FILTER (WHERE us.site_id IS NOT NULL), '{}')
           FROM users u LEFT JOIN user_sites us ON us.user_id = u.id"""


def _user(row) -> User:
    return User(str(row[0]), row[1], row[2], row[3], tuple(row[4]))


async def login(
    conn: AsyncConnection, username: str, password: str, hours: float
) -> tuple[User, str] | None:
    """Check the password; on success a new session token (to put in the cookie)."""
    cur = await conn.execute(
        "SELECT id, username, display_name, role, password_hash FROM users "
        "WHERE username = %s AND active",
        (username,),
    )
    row = await cur.fetchone()
    if not verify_password(row[4] if row else None, password):
        return None
    assert row is not None
    token = secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO user_sessions (token_hash, user_id, expires_at) VALUES (%s, %s, %s)",
        (_token_hash(token), row[0], datetime.now(UTC) + timedelta(hours=hours)),
    )
    cur = await conn.execute(f"{_USER} WHERE u.id = %s GROUP BY u.id", (row[0],))
    return _user(await cur.fetchone()), token


async def user_for(conn: AsyncConnection, token: str) -> User | None:
    cur = await conn.execute(
        f"""{_USER} JOIN user_sessions s ON s.user_id = u.id
            WHERE s.token_hash = %s AND s.expires_at > now() AND u.active GROUP BY u.id""",
        (_token_hash(token),),
    )
    row = await cur.fetchone()
    return _user(row) if row else None


async def logout(conn: AsyncConnection, token: str) -> None:
    await conn.execute("DELETE FROM user_sessions WHERE token_hash = %s", (_token_hash(token),))
