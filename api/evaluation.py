"""Evaluation for evaluators (and unit managers): report figures, exports, baseline import.

Every figure leaving here went through `nattillsyn.evaluation`: small cells suppressed,
residents under pseudonyms made for this one response. Every read is in the access log.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

from aiohttp import web

from nattillsyn.evaluation import baseline as baseline_csv
from nattillsyn.evaluation import store
from nattillsyn.evaluation.model import BaselineImportResult, Report

from .context import (
    POOL,
    SETTINGS,
    USER,
    audit,
    check_csrf_token,
    json_response,
    read_body,
    request_site,
)
from .models import BaselineImport, BaselineOverview, BaselineUpload, UnitList, UnitRef
from .problems import ProblemError
from .queries import evaluation as db
from .queries.units import site_exists
from .routing import Routes

routes = Routes("evaluation")
EVALUATORS = ("evaluator", "unit_manager", "sysadmin")
PURPOSE = "evaluation"
STATIC = Path(__file__).parent / "static"
TABLES = (
    "units",
    "differences",
    "alerts",
    "nights",
    "residents",
    "resident_nights",
    "before_after",
)
REPORT_QUERY = ("site", "from", "to", "compare", "baseline_from", "baseline_to")
MAX_NIGHTS = 3 * 366


def _date(request: web.Request, name: str, default: date | None) -> date | None:
    raw = request.query.get(name)
    if not raw:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ProblemError(400, "Bad Request", f"{name} must be a date YYYY-MM-DD") from None


async def _site(request: web.Request) -> str:
    """The unit asked about: one the user may see, and that exists."""
    site = await request_site(request)
    async with request.app[POOL].connection() as conn:
        if not await site_exists(conn, site):
            raise ProblemError(404, "Not Found", "no such unit")
    return site


def _filename(*parts: object) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join(str(p) for p in parts))


async def _visible_units(request: web.Request) -> dict[str, str]:
    user = request[USER]
    async with request.app[POOL].connection() as conn:
        names = await store.unit_names(conn)
    return {s: n for s, n in names.items() if user.may_see(s)}


async def _report(request: web.Request, microdata: bool = False) -> Report:
    from nattillsyn.evaluation.report import Request, build  # noqa: PLC0415 (numpy: report extra)

    site = await _site(request)
    yesterday = date.today() - timedelta(days=1)
    end = _date(request, "to", yesterday)
    start = _date(request, "from", end - timedelta(days=89))
    assert start is not None and end is not None
    if end < start:
        raise ProblemError(400, "Bad Request", "to is before from")
    if (end - start).days >= MAX_NIGHTS:
        raise ProblemError(400, "Bad Request", f"at most {MAX_NIGHTS} nights in one report")
    compare_q = request.query.get("compare", "all")
    if compare_q not in ("all", "none"):
        raise ProblemError(400, "Bad Request", "compare must be 'all' or 'none'")
    compare = tuple(await _visible_units(request)) if compare_q == "all" else ()
    req = Request(
        site, start, end, compare, _date(request, "baseline_from", None),
        _date(request, "baseline_to", None),
    )  # fmt: skip
    async with request.app[POOL].connection() as conn:
        try:
            return await build(conn, req, request.app[SETTINGS].evaluation, microdata=microdata)
        except ImportError as exc:  # numpy is in the `report` extra
            raise ProblemError(
                501, "Not Implemented", f"install nattillsyn[report]: {exc}"
            ) from None


@routes.get("/api/v1/evaluation/units", roles=EVALUATORS, response=UnitList)
async def units(request: web.Request) -> web.Response:
    """Units the signed-in user may evaluate."""
    visible = await _visible_units(request)
    return json_response(UnitList(units=[UnitRef(site=s, name=n) for s, n in visible.items()]))


@routes.get("/api/v1/evaluation/report", roles=EVALUATORS, response=Report, query=REPORT_QUERY)
async def report(request: web.Request) -> web.Response:
    """Report figures for a unit and period (default: the last 90 nights), with comparisons."""
    rep = await _report(request)
    await audit(
        request, "read", "evaluation report", purpose=PURPOSE, site=rep.site,
        detail={"from": str(rep.start), "to": str(rep.end), "units": len(rep.units)},
    )  # fmt: skip
    return json_response(rep)


@routes.get(
    "/api/v1/evaluation/report.html",
    roles=EVALUATORS,
    response_type="text/html",
    query=(*REPORT_QUERY, "lang", "disposition"),
    problems=(501,),
)
async def report_html(request: web.Request) -> web.Response:
    """The report as one self-contained HTML page with charts, to save or print
    (`lang=sv|en`: Swedish with English after it, or English). The evaluation page shows
    the same page (`disposition=inline`: read, not downloaded)."""
    from nattillsyn.evaluation import render  # noqa: PLC0415 (jinja2: report extra)

    lang = request.query.get("lang", "sv")
    if lang not in render.LANGS:
        raise ProblemError(400, "Bad Request", f"lang must be {' or '.join(render.LANGS)}")
    disposition = request.query.get("disposition", "attachment")
    if disposition not in ("attachment", "inline"):
        raise ProblemError(400, "Bad Request", "disposition must be attachment or inline")
    rep = await _report(request)
    try:
        text = render.to_html(rep, lang)
    except ImportError as exc:
        raise ProblemError(501, "Not Implemented", f"install nattillsyn[report]: {exc}") from None
    detail = {"from": str(rep.start), "to": str(rep.end)}
    if disposition == "inline":  # the evaluation page: a read, like the figures as JSON
        await audit(
            request, "read", "evaluation report", purpose=PURPOSE, site=rep.site,
            detail=detail | {"units": len(rep.units)},
        )  # fmt: skip
        return web.Response(text=text, content_type="text/html")
    await audit(
        request, "export", "evaluation report html", purpose=PURPOSE, site=rep.site, detail=detail
    )
    resp = web.Response(text=text, content_type="text/html")
    resp.headers["Content-Disposition"] = (
        f'attachment; filename="{_filename("nattillsyn", rep.site, rep.start, rep.end)}.html"'
    )
    return resp


@routes.get(
    "/api/v1/evaluation/export/{table}",
    roles=EVALUATORS,
    response_type="text/csv",
    query=(*REPORT_QUERY, "format"),
    problems=(404, 501),
)
async def export(request: web.Request) -> web.Response:
    """One report table as CSV or Parquet (`format=csv|parquet`); pseudonyms new each time."""
    from nattillsyn.evaluation import render  # noqa: PLC0415 (jinja2: report extra)

    table = request.match_info["table"]
    if table not in TABLES:
        raise ProblemError(404, "Not Found", f"tables: {', '.join(TABLES)}")
    fmt = request.query.get("format", "csv")
    if fmt not in ("csv", "parquet"):
        raise ProblemError(400, "Bad Request", "format must be csv or parquet")
    rep = await _report(request, microdata=table == "resident_nights")
    rows = render.tables(rep).get(table)
    if rows is None:
        raise ProblemError(
            404, "Not Found", f"no {table} table in this report (suppressed or none)"
        )
    name = f"{_filename('nattillsyn', rep.site, rep.start, rep.end, table)}.{fmt}"
    if fmt == "csv":
        resp = web.Response(text=render.to_csv(rows), content_type="text/csv", charset="utf-8")
    else:
        try:
            body = render.to_parquet(rows)
        except ImportError as exc:
            raise ProblemError(
                501, "Not Implemented", f"install nattillsyn[report]: {exc}"
            ) from None
        resp = web.Response(body=body, content_type="application/vnd.apache.parquet")
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    await audit(
        request, "export", f"evaluation {table}", purpose=PURPOSE, site=rep.site,
        detail={"from": str(rep.start), "to": str(rep.end), "format": fmt, "rows": len(rows)},
    )  # fmt: skip
    return resp


@routes.get(
    "/api/v1/evaluation/baseline", roles=EVALUATORS, response=BaselineOverview, query=("site",)
)
async def baseline_overview(request: web.Request) -> web.Response:
    """What baseline (night visits before introduction) is stored for a unit."""
    site = await _site(request)
    async with request.app[POOL].connection() as conn:
        agg, rows = await db.baseline_overview(conn, site)
    imports = [BaselineImport(**r) for r in rows]
    await audit(request, "read", "baseline overview", purpose=PURPOSE, site=site)
    return json_response(
        BaselineOverview(
            site=site, first_night=agg["first"], last_night=agg["last"], nights=agg["nights"],
            imports=imports,
        )
    )  # fmt: skip


@routes.post(
    "/api/v1/evaluation/baseline",
    roles=EVALUATORS,
    request=BaselineUpload,
    response=BaselineImportResult,
    status=201,
    query=("site",),
)
async def baseline_import(request: web.Request) -> web.Response:
    """Import night visits before introduction (CSV text in the documented format), all or none."""
    site = await _site(request)
    check_csrf_token(request)
    body = await read_body(request, BaselineUpload)
    rows, errors = baseline_csv.parse(body.csv, today=date.today(), unit=site)
    if errors:
        raise ProblemError(
            422,
            "Invalid baseline file",
            f"{len(errors)} row(s) refused, nothing imported; first: line {errors[0].line}: "
            f"{errors[0].message}",
            errors=[e.model_dump() for e in errors],
        )
    async with request.app[POOL].connection() as conn:
        import_id = await store.save_baseline(
            conn, site, rows, by=request[USER].username, source=body.source
        )
    await audit(
        request, "change", "baseline import", purpose=PURPOSE, site=site,
        detail={"import_id": import_id, "rows": len(rows)},
    )  # fmt: skip
    return json_response(BaselineImportResult(import_id=import_id, site=site, rows=len(rows)), 201)


@routes.table.get("/report")
async def report_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "report.html")
