"""The access log (`audit_log`): one insert for every reader and writer the api records, the
access log page (loggkontroll), and the export datasets: what exists, and each one's SQL
limited to the units a user may see."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from ..models import AuditEntry


async def log_access(
    conn: AsyncConnection,
    *,
    user_id: str | None,
    username: str,
    role: str,
    action: str,
    purpose: str,
    what: str,
    site: str | None = None,
    room: str | None = None,
    detail: dict | None = None,
) -> None:
    """One append-only row: who, when, why, what."""
    await conn.execute(
        """INSERT INTO audit_log (user_id, username, role, action, purpose, what, site, room,
                                  detail)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (
            user_id,
            username,
            role,
            action,
            purpose,
            what,
            site,
            room,
            json.dumps(detail, default=str) if detail else None,
        ),
    )


AUDIT_COLS = ("id", "at", "username", "role", "action", "purpose", "what", "site", "room", "detail")


@dataclass(frozen=True)
class AuditFilter:
    sites: list[str] | None = None  # None: every unit
    user: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    resident: str | None = None
    before: int | None = None  # rows with a smaller id only (paging)


# AuditFilter field -> the condition it adds when given
CONDITIONS = {
    "sites": "site = ANY(%s)",
    "user": "username = %s",
    "action": "action = %s",
    "since": "at >= %s",
    "until": "at < %s",
}


def _where(f: AuditFilter) -> tuple[str, list]:
    where, args = ["true"], []
    for name, cond in CONDITIONS.items():
        if getattr(f, name) is not None:
            where.append(cond)
            args.append(getattr(f, name))
    if f.resident is not None:
        where.append("(detail->>'resident' = %s OR coalesce(detail->'residents', '[]') ? %s)")
        args += [f.resident, f.resident]
    if f.before is not None:
        where.append("id < %s")
        args.append(f.before)
    return " AND ".join(where), args


async def audit_page(conn: AsyncConnection, f: AuditFilter, limit: int) -> list[AuditEntry]:
    """Up to `limit` rows of the access log, newest first."""
    where, args = _where(f)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {', '.join(AUDIT_COLS)} FROM audit_log WHERE {where} "
            "ORDER BY id DESC LIMIT %s",
            (*args, limit),
        )
        return [AuditEntry(**r) for r in await cur.fetchall()]


def audit_sql(f: AuditFilter) -> tuple[str, list]:
    """The access log, oldest first, for a CSV export."""
    where, args = _where(f)
    sql = f"SELECT {', '.join(AUDIT_COLS)} FROM audit_log WHERE {where} ORDER BY id LIMIT 1000000"
    return sql, args


# -- export ------------------------------------------------------------------------------------

_R = "(SELECT site_id FROM residents x WHERE x.id = t.resident_id)"
# name -> (description, SELECT …, expression for the row's unit)
DATASETS: dict[str, tuple[str, str, str]] = {
    "units": ("Units (sites)", "SELECT * FROM sites t", "t.id"),
    "rooms": ("Rooms", "SELECT * FROM rooms t", "t.site_id"),
    "devices": (
        "Devices (no secrets)",
        "SELECT site_id, id, name, room_id, status, agent_version, config_version, "
        "desired_version, desired_monitoring, availability, last_seen, last_heartbeat, "
        "claimed_at, replaces, retired_at, settings, created_at FROM devices t",
        "t.site_id",
    ),
    "device_assignments": (
        "Which device watched which room when",
        "SELECT * FROM device_assignments t",
        "t.site_id",
    ),
    "residents": ("Residents", "SELECT * FROM residents t", "t.site_id"),
    "inclusions": ("Decisions and offers", "SELECT * FROM inclusions t", _R),
    "inclusion_answers": ("Inclusion criteria answers", "SELECT * FROM inclusion_answers t", _R),
    "inclusion_criteria": (
        "Inclusion criteria checklists",
        "SELECT * FROM inclusion_criteria t",
        "coalesce(t.site_id, %(any)s)",
    ),
    "consents": ("Consents and withdrawals", "SELECT * FROM consents t", _R),
    "tillsyn_times": ("Agreed tillsyn times", "SELECT * FROM tillsyn_times t", _R),
    "monitoring_pauses": ("Pauses", "SELECT * FROM monitoring_pauses t", _R),
    "users": (
        "Staff accounts (no password hashes)",
        "SELECT t.id, t.username, t.display_name, t.role, t.active, t.auth_provider, "
        "t.created_at, us.site_id FROM users t JOIN user_sites us ON us.user_id = t.id",
        "us.site_id",
    ),
    "alerts": ("Alerts", "SELECT * FROM alerts t", "t.site"),
    "alert_history": (
        "Alert history",
        "SELECT h.* FROM alert_history h JOIN alerts t ON t.id = h.alert_id",
        "t.site",
    ),
    "rounds": ("Digital rounds", "SELECT * FROM rounds t", "t.site"),
    "visits": ("Physical visits", "SELECT * FROM visits t", "t.site"),
    "events": ("Events from room devices", "SELECT * FROM events t", "t.site"),
    "room_states": ("Room states", "SELECT * FROM room_states t", "t.site"),
    "heartbeats": ("Device heartbeats", "SELECT * FROM heartbeats t", "t.site"),
    "audit_log": ("Access log", "SELECT * FROM audit_log t", "t.site"),
    "change_history": ("Versions of administered data", "SELECT * FROM change_history t", "t.site"),
}


# Tables never exported: sessions, throttling, credentials and bookkeeping.
NOT_EXPORTED = frozenset(
    {
        "user_sessions",
        "login_failures",
        "mqtt_accounts",
        "schema_migrations",
        "staff_pins",
        "pin_attempts",
        "tablet_enrollment_codes",
        "push_subscriptions",
    }
)
# Columns never exported from any table, whoever added it.
SECRET_COLUMN = re.compile(r"hash|token|secret|password|p256dh|^auth$|claim_code", re.I)
_SCOPE_COLUMNS = (("site", "t.site"), ("site_id", "t.site_id"), ("resident_id", _R))


async def datasets(conn: AsyncConnection) -> dict[str, tuple[str, str, str | None]]:
    """The fixed datasets, plus every other table of the schema (tables other modules add
    are exported too), without secret columns; scoped to units where a column allows it."""
    rows = await (
        await conn.execute(
            """SELECT c.table_name, array_agg(c.column_name::text ORDER BY c.ordinal_position)
               FROM information_schema.columns c
               JOIN information_schema.tables t
                 ON t.table_schema = c.table_schema AND t.table_name = c.table_name
               WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
               GROUP BY c.table_name ORDER BY c.table_name"""
        )
    ).fetchall()
    out: dict[str, tuple[str, str, str | None]] = dict(DATASETS)
    known = {select.split(" FROM ")[1].split()[0] for _, select, _ in DATASETS.values()}
    for table, columns in rows:
        if table in known or table in NOT_EXPORTED or table.startswith(("stage_", "pg_")):
            continue
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", table):
            continue
        cols = [c for c in columns if not SECRET_COLUMN.search(c)]
        if not cols:
            continue
        scope = next((expr for col, expr in _SCOPE_COLUMNS if col in columns), None)
        select = f"SELECT {', '.join(cols)} FROM {table} t"
        out[table] = (f"Table {table}", select, scope)
    return out


def dataset_sql(
    name: str, sites: list[str] | None, catalog: dict | None = None
) -> tuple[str, dict] | None:
    """SQL for a dataset limited to `sites` (None: all); None if it cannot be scoped."""
    _, select, site_expr = (catalog or DATASETS)[name]
    if sites is None:
        return select, {}
    if site_expr is None:
        return None  # no unit column: whole-organisation data, for a sysadmin only
    # Rows without a unit (e.g. sign-ins) belong to no unit manager's export.
    return (
        f"{select} WHERE {site_expr.replace('%(any)s', '%(first)s')} = ANY(%(sites)s)",
        {"sites": sites, "first": sites[0] if sites else ""},
    )
