"""Loggkontroll and data export: the access log for unit managers, and everything the
organisation owns as CSV or JSON (one dataset, or all of them in one zip).

Reading the log and exporting are themselves logged.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import tempfile
import zipfile
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from aiohttp import web
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from nattillsyn import __version__

from .admin_common import AdminRoutes, audit_read, connection, parse_uuid, visible_sites
from .context import json_response
from .models import AuditPage, ExportDataset, ExportIndex
from .problems import ProblemError
from .queries import audit as db
from .queries.audit import AuditFilter

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


async def _logged(request: web.Request, action: str, what: str, why: str, **detail) -> None:
    """The access-log row of a read or export here: the `?site=` asked for, and `detail`."""
    await audit_read(
        request, what, action=action, why=why, site=request.query.get("site"), detail=detail
    )


def _audit_filter(request: web.Request) -> AuditFilter:
    q = request.query
    sites = visible_sites(request)  # first: another unit's `?site=` is a 404 before all else
    action = q.get("action") or None
    if action is not None and action not in ACTIONS:
        raise ProblemError(400, "Bad Request", f"action: one of {', '.join(ACTIONS)}")
    since, until = _time(request, "since"), _time(request, "until")
    resident = str(parse_uuid(q["resident"], "resident")) if q.get("resident") else None
    return AuditFilter(sites, q.get("user") or None, action, since, until, resident)


@routes.get("/api/v1/audit", response=AuditPage, query=AUDIT_QUERY, problems=(400, 404))
async def audit_log(request: web.Request) -> web.Response:
    """The access log of the user's units (loggkontroll), newest first."""
    f = _audit_filter(request)
    limit = _int(request, "limit", 200, 1, 1000)
    if request.query.get("before"):
        f = replace(f, before=_int(request, "before", 0, 1, 2**62))
    async with connection(request) as conn:
        rows = await db.audit_page(conn, f, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    await _logged(
        request, "read", "audit log", "loggkontroll", filter=dict(request.query), rows=len(rows)
    )
    return json_response(
        AuditPage(entries=rows, next_before=rows[-1].id if more and rows else None)
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


async def _attachment(
    request: web.Request, content_type: str, filename: str, headers: dict | None = None
) -> web.StreamResponse:
    """A download, prepared: the caller writes the body."""
    disposition = f'attachment; filename="{filename}"'
    resp = web.StreamResponse(
        headers={
            "Content-Type": content_type,
            "Content-Disposition": disposition,
            **(headers or {}),
        }
    )
    await resp.prepare(request)
    return resp


async def _json_array(conn: AsyncConnection, sql: str, args) -> AsyncIterator[bytes]:
    """The rows as one JSON array, in chunks (one row each)."""
    yield b"["
    first = True
    async with conn.cursor(row_factory=dict_row) as cur:
        async for row in cur.stream(sql, args):
            yield (b"" if first else b",\n") + json.dumps(row, default=str).encode()
            first = False
    yield b"]\n"


async def _stream_csv(
    request: web.Request, conn: AsyncConnection, sql: str, args, filename: str
) -> web.StreamResponse:
    resp = await _attachment(request, "text/csv; charset=utf-8", filename)
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
    "/api/v1/audit.csv", response_type="text/csv", query=AUDIT_QUERY[:6], problems=(400, 404)
)
async def audit_csv(request: web.Request) -> web.StreamResponse:
    """The access log as CSV (for the unit manager's loggkontroll), oldest first."""
    sql, args = db.audit_sql(_audit_filter(request))
    await _logged(request, "export", "audit log", "loggkontroll", filter=dict(request.query))
    async with connection(request) as conn:
        return await _stream_csv(request, conn, sql, args, "loggkontroll.csv")


# -- export ------------------------------------------------------------------------------------


@routes.get("/api/v1/export", response=ExportIndex)
async def export_index(request: web.Request) -> web.Response:
    """The datasets the organisation owns, each exportable as CSV or JSON."""
    await audit_read(request, "export index", why="data export")
    async with connection(request) as conn:
        catalog = await db.datasets(conn)
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
    "/api/v1/export/{dataset}", response_type="text/csv", query=("site", "format"), problems=(400,)
)
async def export_dataset(request: web.Request) -> web.StreamResponse:
    """One dataset of the user's units as CSV (default) or JSON (`?format=json`)."""
    name = request.match_info["dataset"]
    async with connection(request) as conn:
        catalog = await db.datasets(conn)
    if name not in catalog:
        raise ProblemError(404, "Not Found", "no such dataset")
    fmt = request.query.get("format", "csv")
    if fmt not in ("csv", "json"):
        raise ProblemError(400, "Bad Request", "format: csv or json")
    sites = visible_sites(request)
    query = db.dataset_sql(name, sites, catalog)
    if query is None:
        raise ProblemError(403, "Forbidden", "whole-organisation data: system administrators only")
    sql, args = query
    await _logged(request, "export", f"dataset {name}", "data export", format=fmt, sites=sites)
    async with connection(request) as conn:
        if fmt == "csv":
            return await _stream_csv(request, conn, sql, args, f"{name}.csv")
        resp = await _attachment(request, "application/json", f"{name}.json")
        async for chunk in _json_array(conn, sql, args):
            await resp.write(chunk)
        await resp.write_eof()
        return resp


@routes.get("/api/v1/export.zip", response_type="application/zip", query=("site",), problems=(404,))
async def export_all(request: web.Request) -> web.StreamResponse:
    """Everything of the user's units (all datasets, CSV and JSON) in one zip."""
    sites = visible_sites(request)
    await _logged(request, "export", "all datasets", "data export", sites=sites)
    tmp = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)  # noqa: SIM115 - streamed below
    try:
        counts: dict[str, int] = {}
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            async with connection(request) as conn:
                catalog = await db.datasets(conn)
                for name in catalog:
                    query = db.dataset_sql(name, sites, catalog)
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
        resp = await _attachment(
            request, "application/zip", "nattillsyn-export.zip", {"Content-Length": str(size)}
        )
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
    with zf.open(f"{name}.json", "w") as f:
        async for chunk in _json_array(conn, sql, args):
            f.write(chunk)
    return n
