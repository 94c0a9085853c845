"""Digital rounds and physical visits on the tablet: see the round, confirm it, register the
visits made (start/end), so every avoided and every made visit is recorded."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from nattillsyn.alerting import rounds_db

from . import auth
from .board import MANAGERS, NIGHT, STAFF
from .context import POOL, SETTINGS, USER, audit, json_response, read_body, request_site
from .models import Confirmed, RoundConfirm, RoundEntry, RoundList, Visit, VisitList, VisitStart
from .problems import ProblemError
from .routing import Routes

routes = Routes("rounds")


@routes.get("/api/v1/rounds", roles=STAFF, response=RoundList, query=("site",))
async def list_rounds(request: web.Request) -> web.Response:
    """Tonight's round entries of a unit (digital check enough / physical visit needed)."""
    site = await request_site(request)
    async with request.app[POOL].connection() as conn:
        rows = await rounds_db.rounds_since(conn, site, datetime.now(UTC) - NIGHT)
    await audit(request, "read", "rounds", site=site, detail={"entries": len(rows)})
    return json_response(RoundList(entries=[RoundEntry.model_validate(r) for r in rows]))


@routes.post("/api/v1/rounds/confirm", roles=STAFF, request=RoundConfirm, response=Confirmed)
async def confirm_rounds(request: web.Request) -> web.Response:
    """Confirm round entries: staff have seen the digital check (one tap for the whole list)."""
    body = await read_body(request, RoundConfirm)
    user: auth.User = request[USER]
    schema = request.app[SETTINGS].database_schema
    async with request.app[POOL].connection() as conn:
        rows = await rounds_db.confirm(conn, schema, body.ids, user.username, user.own_sites())
    sites = {r["site"] for r in rows}
    for site in sites:
        await audit(request, "change", "round confirm", site=site, detail={"entries": len(rows)})
    return json_response(Confirmed(confirmed=len(rows)))


@routes.post(
    "/api/v1/practice/rounds", roles=MANAGERS, response=RoundList, status=201, query=("site",)
)
async def practice_round(request: web.Request) -> web.Response:
    """A practice round for the unit now (training): marked and never counted."""
    site = await request_site(request)
    cfg = request.app[SETTINGS]
    async with request.app[POOL].connection() as conn:
        made = await rounds_db.practice_round(
            conn, cfg.database_schema, site, datetime.now(UTC), cfg.alerting.round_window_s
        )
    await audit(request, "change", "practice round", site=site, detail={"entries": len(made)})
    return json_response(
        RoundList(entries=[RoundEntry.model_validate(r) for r in made]), status=201
    )


@routes.post(
    "/api/v1/visits", roles=STAFF, request=VisitStart, response=Visit, status=201, query=("site",)
)
async def start_visit(request: web.Request) -> web.Response:
    """Register entering a room (a physical visit): why, and for which round entry or alert."""
    body = await read_body(request, VisitStart)
    site = await request_site(request)
    schema = request.app[SETTINGS].database_schema
    try:
        async with request.app[POOL].connection() as conn:
            row = await rounds_db.start_visit(
                conn,
                schema,
                site=site,
                room=body.room,
                by=request[USER].username,
                reason=body.reason,
                round_id=body.round_id,
                alert_id=body.alert_id,
            )
    except rounds_db.UnknownReference as exc:
        raise ProblemError(422, "Invalid request body", str(exc)) from None
    await audit(request, "change", "visit start", site=site, room=body.room)
    return json_response(Visit.model_validate(row), status=201)


@routes.post("/api/v1/visits/{visit_id}/end", roles=STAFF, response=Visit)
async def end_visit(request: web.Request) -> web.Response:
    """Register leaving the room."""
    schema = request.app[SETTINGS].database_schema
    async with request.app[POOL].connection() as conn:
        row = await rounds_db.end_visit(
            conn, schema, request.match_info["visit_id"], request[USER].own_sites()
        )
    if row is None:
        raise ProblemError(404, "Not Found", "no such open visit")
    await audit(request, "change", "visit end", site=row["site"], room=row["room"])
    return json_response(Visit.model_validate(row))


@routes.get("/api/v1/visits", roles=STAFF, response=VisitList, query=("site",))
async def list_visits(request: web.Request) -> web.Response:
    """Tonight's visits of a unit, newest first."""
    site = await request_site(request)
    since = datetime.now(UTC) - NIGHT
    async with request.app[POOL].connection() as conn:
        rows = await rounds_db.visits_since(conn, site, since, 500)
    await audit(request, "read", "visits", site=site, detail={"visits": len(rows)})
    return json_response(VisitList(visits=[Visit.model_validate(r) for r in rows]))
