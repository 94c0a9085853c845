"""Single sign-on in progress (`oidc_logins`): one row per started sign-in, used once."""

from __future__ import annotations

from psycopg import AsyncConnection

from . import fetch_one


async def start_login(
    conn: AsyncConnection,
    state_hash: str,
    nonce: str,
    verifier: str,
    next_path: str,
    redirect_uri: str,
    timeout_s: float,
) -> None:
    """Remember a started sign-in (and forget those too old to finish)."""
    await conn.execute(
        "DELETE FROM oidc_logins WHERE created_at < now() - make_interval(secs => %s)",
        (timeout_s,),
    )
    await conn.execute(
        """INSERT INTO oidc_logins (state_hash, nonce, verifier, next, redirect_uri)
           VALUES (%s, %s, %s, %s, %s)""",
        (state_hash, nonce, verifier, next_path, redirect_uri),
    )


async def take_login(conn: AsyncConnection, state_hash: str, timeout_s: float) -> tuple | None:
    """(nonce, verifier, next, redirect uri, still fresh) of the sign-in, now gone; None if unknown."""
    return await fetch_one(
        conn,
        """DELETE FROM oidc_logins WHERE state_hash = %s
           RETURNING nonce, verifier, next, redirect_uri,
                     created_at > now() - make_interval(secs => %s)""",
        (state_hash, timeout_s),
    )
