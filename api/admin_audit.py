"""Loggkontroll and data export: the access log for unit managers, and everything the
organisation owns as CSV or JSON (one dataset, or all of them in one zip).

Reading the log and exporting are themselves logged.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import tempfile
import zipfile
from datetime import date, datetime
from typing import Any

from aiohttp import web
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from nattillsyn import __version__

from .admin_common import MANAGERS, AdminRoutes, parse_uuid, purpose, visible_sites
from .context import POOL, audit, json_response
from .models import AuditEntry, AuditPage, ExportDataset, ExportIndex
from .problems import ProblemError

routes = AdminRoutes("audit")
AUDIT_QUERY = ("site", "user", "action", "since", "until", "resident", "before", "limit")
ACTIONS = ("read", "change", "login", "logout", "export")


def _time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ProblemError(400, "Bad Request", f"{name}: not an ISO 8601 time") from None
    if value.tzinfo is None:
        raise ProblemError(400, "Bad Request", f"{name}: give a time zone (e.g. Z)")
    return value


def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ProblemError(400, "Bad Request", f"{name}: not a whole number") from None
    if not lo <= value <= hi:
        raise ProblemError(400, "Bad Request", f"{name}: between {lo} and {hi}")
    return value


def _audit_filter(request: web.Request) -> tuple[str, list]:
    where, args = ["true"], []
    sites = visible_sites(request)
    if sites is not None:
        where.append("site = ANY(%s)")
        args.append(sites)
    if request.query.get("user"):
        where.append("username = %s")
        args.append(request.query["user"])
    if request.query.get("action"):
        if request.query["action"] not in ACTIONS:
            raise ProblemError(400, "Bad Request", f"action: one of {', '.join(ACTIONS)}")
        where.append("action = %s")
        args.append(request.query["action"])
    for name, op in (("since", ">="), ("until", "<")):
        t = _time(request, name)
        if t is not None:
            where.append(f"at {op} %s")
            args.append(t)
    if request.query.get("resident"):
        rid = str(parse_uuid(request.query["resident"], "resident"))
        where.append("(detail->>'resident' = %s OR coalesce(detail->'residents', '[]') ? %s)")
        args += [rid, rid]
    return " AND ".join(where), args


AUDIT_COLS = ("id", "at", "username", "role", "action", "purpose", "what", "site", "room", "detail")


@routes.get(
    "/api/v1/audit",
    roles=MANAGERS,
    response=AuditPage,
    query=AUDIT_QUERY,
    problems=(400, 404),
)
async def audit_log(request: web.Request) -> web.Response:
    """The access log of the user's units (loggkontroll), newest first."""
    where, args = _audit_filter(request)
    limit = _int(request, "limit", 200, 1, 1000)
    before = request.query.get("before")
    if before:
        where += " AND id < %s"
        args.append(_int(request, "before", 0, 1, 2**62))
    async with request.app[POOL].connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {', '.join(AUDIT_COLS)} FROM audit_log WHERE {where} "
            "ORDER BY id DESC LIMIT %s",
            (*args, limit + 1),
        )
        rows = await cur.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    await audit(
        request, "read", "audit log", purpose=purpose(request, "loggkontroll"),
        site=request.query.get("site"), detail={"filter": dict(request.query), "rows": len(rows)},
    )  # fmt: skip
    return json_response(
        AuditPage(
            entries=[AuditEntry(**r) for r in rows],
            next_before=rows[-1]["id"] if more and rows else None,
        )
    )


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False, default=str)
    return str(v)


def _csv_line(values) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerow([_cell(v) for v in values])
    return buf.getvalue().encode()


async def _stream_csv(
    request: web.Request, conn: AsyncConnection, sql: str, args, filename: str
) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{filename}"',
        }
    )
    await resp.prepare(request)
    async with conn.cursor() as cur:
        header = False
        async for row in cur.stream(sql, args):
            if not header:
                await resp.write(_csv_line([c.name for c in cur.description]))
                header = True
            await resp.write(_csv_line(row))
        if not header and cur.description:
            await resp.write(_csv_line([c.name for c in cur.description]))
    await resp.write_eof()
    return resp


@routes.get(
    "/api/v1/audit.csv",
    roles=MANAGERS,
    response_type="text/csv",
    query=AUDIT_QUERY[:6],
    problems=(400, 404),
)
async def audit_csv(request: web.Request) -> web.StreamResponse:
    """The access log as CSV (for the unit manager's loggkontroll), oldest first."""
    where, args = _audit_filter(request)
    await audit(
        request, "export", "audit log", purpose=purpose(request, "loggkontroll"),
        site=request.query.get("site"), detail={"filter": dict(request.query)},
    )  # fmt: skip
    async with request.app[POOL].connection() as conn:
        return await _stream_csv(
            request,
            conn,
            f"SELECT {', '.join(AUDIT_COLS)} FROM audit_log WHERE {where} ORDER BY id LIMIT 1000000",
            args,
            "loggkontroll.csv",
        )


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


def _dataset_sql(
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


@routes.get("/api/v1/export", roles=MANAGERS, response=ExportIndex)
async def export_index(request: web.Request) -> web.Response:
    """The datasets the organisation owns, each exportable as CSV or JSON."""
    await audit(request, "read", "export index", purpose=purpose(request, "data export"))
    async with request.app[POOL].connection() as conn:
        catalog = await datasets(conn)
    sites = visible_sites(request)
    return json_response(
        ExportIndex(
            datasets=[
                ExportDataset(name=k, description=v[0])
                for k, v in catalog.items()
                if sites is None or v[2] is not None
            ]
        )
    )


@routes.get(
    "/api/v1/export/{dataset}",
    roles=MANAGERS,
    response_type="text/csv",
    query=("site", "format"),
    problems=(400,),
)
async def export_dataset(request: web.Request) -> web.StreamResponse:
    """One dataset of the user's units as CSV (default) or JSON (`?format=json`)."""
    name = request.match_info["dataset"]
    async with request.app[POOL].connection() as conn:
        catalog = await datasets(conn)
    if name not in catalog:
        raise ProblemError(404, "Not Found", "no such dataset")
    fmt = request.query.get("format", "csv")
    if fmt not in ("csv", "json"):
        raise ProblemError(400, "Bad Request", "format: csv or json")
    sites = visible_sites(request)
    query = _dataset_sql(name, sites, catalog)
    if query is None:
        raise ProblemError(403, "Forbidden", "whole-organisation data: system administrators only")
    sql, args = query
    await audit(
        request, "export", f"dataset {name}", purpose=purpose(request, "data export"),
        site=request.query.get("site"), detail={"format": fmt, "sites": sites},
    )  # fmt: skip
    async with request.app[POOL].connection() as conn:
        if fmt == "csv":
            return await _stream_csv(request, conn, sql, args, f"{name}.csv")
        resp = web.StreamResponse(
            headers={
                "Content-Type": "application/json",
                "Content-Disposition": f'attachment; filename="{name}.json"',
            }
        )
        await resp.prepare(request)
        await resp.write(b"[")
        first = True
        async with conn.cursor(row_factory=dict_row) as cur:
            async for row in cur.stream(sql, args):
                await resp.write((b"" if first else b",\n") + json.dumps(row, default=str).encode())
                first = False
        await resp.write(b"]\n")
        await resp.write_eof()
        return resp


@routes.get(
    "/api/v1/export.zip",
    roles=MANAGERS,
    response_type="application/zip",
    query=("site",),
    problems=(404,),
)
async def export_all(request: web.Request) -> web.StreamResponse:
    """Everything of the user's units (all datasets, CSV and JSON) in one zip."""
    sites = visible_sites(request)
    await audit(
        request, "export", "all datasets", purpose=purpose(request, "data export"),
        site=request.query.get("site"), detail={"sites": sites},
    )  # fmt: skip
    tmp = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)  # noqa: SIM115 - streamed below
    try:
        counts: dict[str, int] = {}
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            async with request.app[POOL].connection() as conn:
                catalog = await datasets(conn)
                for name in catalog:
                    query = _dataset_sql(name, sites, catalog)
                    if query is not None:  # unscoped tables: sysadmin only
                        counts[name] = await _zip_dataset(conn, zf, name, *query)
            zf.writestr(
                "manifest.json",
                json.dumps(
                    {
                        "exported_at": datetime.now().astimezone().isoformat(),
                        "nattillsyn": __version__,
                        "units": sites or "all",
                        "datasets": {
                            k: {"description": catalog[k][0], "rows": n} for k, n in counts.items()
                        },
                    },
                    indent=2,
                ),
            )
        size = tmp.tell()
        tmp.seek(0)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "application/zip",
                "Content-Disposition": 'attachment; filename="nattillsyn-export.zip"',
                "Content-Length": str(size),
            }
        )
        await resp.prepare(request)
        while chunk := await asyncio.to_thread(tmp.read, 256 * 1024):
            await resp.write(chunk)
        await resp.write_eof()
        return resp
    finally:
        tmp.close()


async def _zip_dataset(conn: AsyncConnection, zf: zipfile.ZipFile, name: str, sql, args) -> int:
    """The dataset as `<name>.csv` and `<name>.json` (two passes: one zip entry open at a time)."""
    n = 0
    with zf.open(f"{name}.csv", "w") as f:
        async with conn.cursor(row_factory=dict_row) as cur:
            async for row in cur.stream(sql, args):
                if n == 0:
                    f.write(_csv_line(row.keys()))
                f.write(_csv_line(row.values()))
                n += 1
    first = True
    with zf.open(f"{name}.json", "w") as f:
        f.write(b"[")
        async with conn.cursor(row_factory=dict_row) as cur:
            async for row in cur.stream(sql, args):
                f.write((b"" if first else b",\n") + json.dumps(row, default=str).encode())
                first = False
        f.write(b"]\n")
    return n
