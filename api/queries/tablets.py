"""Shared tablets: enrollment, PIN sign-in and its rate limits, staff sign-ins, Web Push."""

from __future__ import annotations

from datetime import datetime, timedelta

from psycopg import AsyncConnection

from . import fetch_all, fetch_one, fetch_value


async def touch(conn: AsyncConnection, token_hash: str) -> tuple | None:
    """(id, site, name, groups) of the tablet with this token, now seen; None if unknown or revoked."""
    return await fetch_one(
        conn,
        """UPDATE tablets SET last_seen_at = now()
           WHERE token_hash = %s AND revoked_at IS NULL
           RETURNING id, site_id, name, groups""",
        (token_hash,),
    )


async def insert(
    conn: AsyncConnection, site: str, name: str, token_hash: str, groups: list[str], by: str
) -> str:
    tablet_id = await fetch_value(
        conn,
        """INSERT INTO tablets (site_id, name, token_hash, groups, enrolled_by)
           VALUES (%s, %s, %s, %s, %s) RETURNING id""",
        (site, name, token_hash, groups, by),
    )
    return str(tablet_id)


async def staff_buttons(conn: AsyncConnection, tablet_id: str, site: str) -> list[tuple]:
    """(username, display name, signed in here lately) of the unit's staff with a PIN."""
    return await fetch_all(
        conn,
        """SELECT u.username, u.display_name,
                  EXISTS (SELECT 1 FROM tablet_signins s WHERE s.user_id = u.id
                          AND s.tablet_id = %s AND s.signed_in_at > now() - interval '16 hours')
           FROM users u JOIN user_sites us ON us.user_id = u.id
           JOIN staff_pins p ON p.user_id = u.id
           WHERE us.site_id = %s AND u.active AND u.role IN ('night_staff', 'unit_manager')
           ORDER BY 3 DESC, u.display_name LIMIT 60""",
        (tablet_id, site),
    )


async def insert_enrollment_code(
    conn: AsyncConnection,
    code_hash: str,
    site: str,
    name: str,
    groups: list[str],
    by: str,
    expires: datetime,
) -> None:
    await conn.execute(
        """INSERT INTO tablet_enrollment_codes (code_hash, site_id, name, groups, created_by,
                                                expires_at)
           VALUES (%s, %s, %s, %s, %s, %s)""",
        (code_hash, site, name, groups, by, expires),
    )


async def use_enrollment_code(conn: AsyncConnection, code_hash: str) -> tuple | None:
    """(site, name, groups, created by) of a valid unused code, now used; None otherwise."""
    return await fetch_one(
        conn,
        """UPDATE tablet_enrollment_codes SET used_at = now()
           WHERE code_hash = %s AND used_at IS NULL AND expires_at > now()
           RETURNING site_id, name, groups, created_by""",
        (code_hash,),
    )


async def enrolled(conn: AsyncConnection, site: str) -> list[tuple]:
    """(id, name, site, groups, enrolled at, last seen) of the unit's tablets, by name."""
    return await fetch_all(
        conn,
        """SELECT id, name, site_id, groups, enrolled_at, last_seen_at FROM tablets
           WHERE site_id = %s AND revoked_at IS NULL ORDER BY name""",
        (site,),
    )


async def site_of(conn: AsyncConnection, tablet_id: str) -> str | None:
    sql = "SELECT site_id FROM tablets WHERE id::text = %s"
    return await fetch_value(conn, sql, (tablet_id,))


async def revoke(conn: AsyncConnection, tablet_id: str) -> None:
    """The tablet's cookie stops working and every session signed in on it ends."""
    await conn.execute("UPDATE tablets SET revoked_at = now() WHERE id::text = %s", (tablet_id,))
    await conn.execute(
        """DELETE FROM user_sessions WHERE token_hash IN (
               SELECT token_hash FROM tablet_signins WHERE tablet_id::text = %s)""",
        (tablet_id,),
    )


async def fresh_sso_session(conn: AsyncConnection, token_hash: str) -> bool:
    """This session came from single sign-on less than 15 minutes ago."""
    fresh = await fetch_value(
        conn,
        """SELECT true FROM user_sessions WHERE token_hash = %s AND provider = 'oidc'
           AND created_at > now() - interval '15 minutes'""",
        (token_hash,),
    )
    return fresh is not None


async def set_pin(conn: AsyncConnection, user_id: str, pin_hash: str) -> None:
    await conn.execute(
        """INSERT INTO staff_pins (user_id, pin_hash) VALUES (%s, %s)
           ON CONFLICT (user_id) DO UPDATE SET pin_hash = EXCLUDED.pin_hash, updated_at = now()""",
        (user_id, pin_hash),
    )


async def end_signins(conn: AsyncConnection, tablet_id: str, reason: str) -> None:
    """End every staff session signed in on the tablet (quick switch, lock)."""
    rows = await fetch_all(
        conn,
        """UPDATE tablet_signins SET ended_at = now(), end_reason = %s
           WHERE tablet_id = %s AND ended_at IS NULL RETURNING token_hash""",
        (reason, tablet_id),
    )
    hashes = [r[0] for r in rows]
    if hashes:
        await conn.execute("DELETE FROM user_sessions WHERE token_hash = ANY(%s)", (hashes,))


async def switch_signin(
    conn: AsyncConnection, tablet_id: str, token_hash: str, user_id: str
) -> None:
    """The session `token_hash` is now the one signed in on the tablet; any other there ends."""
    await end_signins(conn, tablet_id, "switch")
    sql = "INSERT INTO tablet_signins (token_hash, tablet_id, user_id) VALUES (%s, %s, %s)"
    await conn.execute(sql, (token_hash, tablet_id, user_id))


async def record_sso_signin(conn: AsyncConnection, tablet_id: str, user_id: str) -> None:
    """Single sign-on on this tablet: PIN sign-in is allowed for the shift."""
    await conn.execute(
        """INSERT INTO tablet_sso_signins (tablet_id, user_id) VALUES (%s, %s)
           ON CONFLICT (tablet_id, user_id) DO UPDATE SET at = now()""",
        (tablet_id, user_id),
    )


async def pin_candidate(
    conn: AsyncConnection,
    username: str,
    site: str,
    tablet_id: str,
    *,
    local_passwords: bool,
    sso_within_s: float,
) -> tuple | None:
    """(user id, PIN hash, role, belongs to the unit, needs SSO first, had SSO here lately)."""
    return await fetch_one(
        conn,
        """SELECT u.id, p.pin_hash, u.role,
                  EXISTS (SELECT 1 FROM user_sites us WHERE us.user_id = u.id AND us.site_id = %s),
                  u.auth_provider <> 'password' OR NOT %s,
                  EXISTS (SELECT 1 FROM tablet_sso_signins t
                          WHERE t.user_id = u.id AND t.tablet_id = %s
                            AND t.at > now() - make_interval(secs => %s))
           FROM users u LEFT JOIN staff_pins p ON p.user_id = u.id
           WHERE u.username = %s AND u.active""",
        (site, local_passwords, tablet_id, sso_within_s, username),
    )


async def pin_failures(
    conn: AsyncConnection, user_id: str | None, tablet_id: str, window: timedelta
) -> tuple[int, int]:
    """Wrong PINs within `window`: (for this user, on this tablet)."""
    user_fails = await fetch_value(
        conn,
        """SELECT count(*) FILTER (WHERE user_id = %s) FROM pin_attempts
           WHERE NOT ok AND at > now() - %s AND (tablet_id = %s OR user_id = %s)""",
        (user_id, window, tablet_id, user_id),
    )
    tablet_fails = await fetch_value(
        conn,
        "SELECT count(*) FROM pin_attempts WHERE NOT ok AND at > now() - %s AND tablet_id = %s",
        (window, tablet_id),
    )
    return user_fails, tablet_fails


async def record_pin_attempt(
    conn: AsyncConnection, tablet_id: str, user_id: str | None, ok: bool
) -> None:
    await conn.execute(
        "INSERT INTO pin_attempts (tablet_id, user_id, ok) VALUES (%s, %s, %s)",
        (tablet_id, user_id, ok),
    )


async def extend_pin_session(conn: AsyncConnection, token_hash: str, secs: float) -> None:
    """Slide a tablet session's expiry (only sessions signed in on a tablet)."""
    await conn.execute(
        """UPDATE user_sessions SET expires_at = now() + make_interval(secs => %s)
           WHERE token_hash = %s AND token_hash IN (
               SELECT token_hash FROM tablet_signins WHERE ended_at IS NULL)""",
        (secs, token_hash),
    )


async def subscribe_push(
    conn: AsyncConnection, endpoint: str, tablet_id: str, site: str, p256dh: str, auth: str
) -> None:
    await conn.execute(
        """INSERT INTO push_subscriptions (endpoint, tablet_id, site_id, p256dh, auth)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (endpoint) DO UPDATE SET tablet_id = EXCLUDED.tablet_id,
               site_id = EXCLUDED.site_id, p256dh = EXCLUDED.p256dh, auth = EXCLUDED.auth,
               failed_at = NULL""",
        (endpoint, tablet_id, site, p256dh, auth),
    )
