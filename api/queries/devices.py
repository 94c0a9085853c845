"""Devices: their views and health, provisioning, claim codes, retirement and claiming."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ..models import DeviceView
from .rows import update_row

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed on a Pi


def new_claim_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def claim_hash(code: str) -> str:
    norm = code.upper().replace("-", "").replace(" ", "")
    return hashlib.sha256(norm.encode()).hexdigest()


def health(row: dict, now: datetime) -> str:
    """ok / stale / offline / never_seen / config_pending / retired."""
    if row["status"] == "retired":
        return "retired"
    if row["last_seen"] is None:
        return "never_seen"
    if row["availability"] == "offline":
        return "offline"
    beat_s = float((row["settings"] or {}).get("heartbeat_s") or 15.0)
    if row["last_heartbeat"] is None or now - row["last_heartbeat"] > timedelta(
        seconds=3 * beat_s + 5
    ):
        return "stale"
    pushed = row["config_pushed_at"]
    if (
        row["desired_version"] > row["config_version"]
        and pushed is not None
        and now - pushed > timedelta(seconds=10)
    ):
        return "config_pending"
    return "ok"


DEVICE_SQL = """
    SELECT d.site_id, d.id, d.name, d.room_id, d.status, d.provisioned_by IS NOT NULL AS managed,
           d.availability, d.last_heartbeat, d.last_seen, d.agent_version, d.config_version,
           d.desired_version, d.desired_monitoring, d.claimed_at, d.claim_expires_at, d.replaces,
           d.settings, d.config_pushed_at, hb.payload AS heartbeat
    FROM devices d
    LEFT JOIN LATERAL (
        SELECT payload FROM heartbeats h WHERE h.site = d.site_id AND h.device = d.id
        ORDER BY ts DESC LIMIT 1) hb ON true"""


# Columns a DeviceView shows under their own name.
SAME_NAME = (
    "id",
    "name",
    "status",
    "managed",
    "availability",
    "last_heartbeat",
    "last_seen",
    "agent_version",
    "desired_version",
    "desired_monitoring",
    "claimed_at",
    "replaces",
)


def _view(r: dict, now: datetime) -> DeviceView:
    hb = r["heartbeat"] or {}
    return DeviceView(
        **{k: r[k] for k in SAME_NAME},
        site=r["site_id"],
        room=r["room_id"],
        health=health(r, now),  # type: ignore[arg-type]
        fps=hb.get("fps"),
        monitoring=hb.get("monitoring"),
        applied_version=r["config_version"],
        claim_expires_at=r["claim_expires_at"] if r["status"] == "provisioned" else None,
        settings=r["settings"] or {},
    )


async def _views(conn: AsyncConnection, where: str, args: tuple) -> list[DeviceView]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"{DEVICE_SQL} WHERE {where} ORDER BY d.site_id, d.room_id, d.id", args)
        rows = await cur.fetchall()
    now = datetime.now(UTC)
    return [_view(r, now) for r in rows]


async def views(conn: AsyncConnection, sites: list[str] | None) -> list[DeviceView]:
    """The devices of `sites` (None: every unit) with their health."""
    if sites is None:
        return await _views(conn, "true", ())
    return await _views(conn, "d.site_id = ANY(%s)", (sites,))


async def view(conn: AsyncConnection, site: str, device: str) -> DeviceView | None:
    found = await _views(conn, "d.site_id = %s AND d.id = %s", (site, device))
    return found[0] if found else None


async def room_device(conn: AsyncConnection, site: str, room: str) -> DeviceView | None:
    """The room's device in service: the provisioned one before one seen only from messages."""
    found = await _views(
        conn, "d.site_id = %s AND d.room_id = %s AND d.status <> 'retired'", (site, room)
    )
    managed = [v for v in found if v.managed] or found
    return managed[0] if managed else None


# -- provisioning --------------------------------------------------------------------------


async def other_managed_device(
    conn: AsyncConnection, site: str, room: str, device: str
) -> str | None:
    """Another provisioned device in service in the room, if any."""
    cur = await conn.execute(
        """SELECT id FROM devices WHERE site_id = %s AND room_id = %s AND id <> %s
           AND status <> 'retired' AND provisioned_by IS NOT NULL""",
        (site, room, device),
    )
    row = await cur.fetchone()
    return row[0] if row else None


async def known_device(conn: AsyncConnection, site: str, device: str) -> tuple | None:
    """(provisioned_by, status) of a device the database knows, else None."""
    cur = await conn.execute(
        "SELECT provisioned_by, status FROM devices WHERE site_id = %s AND id = %s", (site, device)
    )
    return await cur.fetchone()


async def provision(
    conn: AsyncConnection,
    site: str,
    device: str,
    room: str,
    name: str | None,
    settings: dict,
    by: str,
    *,
    adopt: bool,
    replaces: str | None = None,
) -> None:
    """Provision a new device, or `adopt` one seen only from its messages, in `room`."""
    if adopt:
        await conn.execute(
            """UPDATE devices SET room_id = %s, name = %s, status = 'provisioned',
                   provisioned_by = %s, settings = %s, replaces = %s
               WHERE site_id = %s AND id = %s""",
            (room, name, by, Jsonb(settings), replaces, site, device),
        )
    else:
        await conn.execute(
            """INSERT INTO devices (site_id, id, room_id, name, status, provisioned_by, settings,
                                    replaces)
               VALUES (%s, %s, %s, %s, 'provisioned', %s, %s, %s)""",
            (site, device, room, name, by, Jsonb(settings), replaces),
        )
    await conn.execute(
        "INSERT INTO device_assignments (site_id, device_id, room_id) VALUES (%s, %s, %s)",
        (site, device, room),
    )


async def issue_claim_code(
    conn: AsyncConnection, site: str, device: str, hours: float
) -> tuple[str, datetime]:
    """A new one-time claim code for the device (only its hash is kept) and its expiry."""
    code = new_claim_code()
    expires = datetime.now(UTC) + timedelta(hours=hours)
    await conn.execute(
        "UPDATE devices SET claim_hash = %s, claim_expires_at = %s WHERE site_id = %s AND id = %s",
        (claim_hash(code), expires, site, device),
    )
    return code, expires


async def update_device(conn: AsyncConnection, site: str, device: str, fields: dict) -> None:
    values = {k: Jsonb(v) if k == "settings" else v for k, v in fields.items()}
    await update_row(conn, "devices", {"site_id": site, "id": device}, values)


async def retire(conn: AsyncConnection, site: str, device: str) -> None:
    """Out of service: a last config version with monitoring off, assignment ended, account
    revoked."""
    await conn.execute(
        """UPDATE devices SET status = 'retired', retired_at = now(), claim_hash = NULL,
               desired_version = greatest(desired_version, config_version) + 1,
               desired_monitoring = false, config_pushed_at = now()
           WHERE site_id = %s AND id = %s""",
        (site, device),
    )
    for table, column in (("device_assignments", "to_at"), ("mqtt_accounts", "revoked_at")):
        await conn.execute(
            f"UPDATE {table} SET {column} = now() WHERE site_id = %s AND device_id = %s "
            f"AND {column} IS NULL",
            (site, device),
        )


async def desired_version(conn: AsyncConnection, site: str, device: str) -> int:
    cur = await conn.execute(
        "SELECT desired_version FROM devices WHERE site_id = %s AND id = %s", (site, device)
    )
    return (await cur.fetchone())[0]


# -- claiming ------------------------------------------------------------------------------


async def claimable(conn: AsyncConnection, code: str) -> tuple[str, str, str | None] | None:
    """(site, device, room) of the device a valid claim code is for, locked; else None."""
    cur = await conn.execute(
        """SELECT site_id, id, room_id FROM devices
           WHERE claim_hash = %s AND claim_expires_at > now() AND status <> 'retired'
           FOR UPDATE""",
        (claim_hash(code),),
    )
    return await cur.fetchone()


async def claimed(
    conn: AsyncConnection,
    site: str,
    device: str,
    room: str | None,
    username: str,
    password_hash: str,
    client: str,
) -> None:
    """The device's broker account (re)created, its claim code spent, and the claim logged."""
    await conn.execute(
        """INSERT INTO mqtt_accounts (username, kind, site_id, device_id, password_hash)
           VALUES (%s, 'device', %s, %s, %s)
           ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash,
               site_id = EXCLUDED.site_id, device_id = EXCLUDED.device_id,
               revoked_at = NULL, created_at = now()""",
        (username, site, device, password_hash),
    )
    await conn.execute(
        """UPDATE devices SET claim_hash = NULL, claim_expires_at = NULL,
               claimed_at = now(), status = 'active'
           WHERE site_id = %s AND id = %s""",
        (site, device),
    )
    await conn.execute(
        """INSERT INTO audit_log (username, role, action, purpose, what, site, room, detail)
           VALUES (%s, 'device', 'change', 'provisioning', 'device claimed', %s, %s, %s)""",
        (username, site, room, Jsonb({"device": device, "client": client})),
    )
