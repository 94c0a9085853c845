"""Digital rounds and physical visits on the tablet: see the round, confirm it, register the
visits made (start/end), so every avoided and every made visit is recorded."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from psycopg.rows import dict_row

from nattillsyn.alerting import roundstore
from nattillsyn.ids import new_id

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
    since = datetime.now(UTC) - NIGHT
    cols = ", ".join(f"ro.{c.strip()}" for c in roundstore.ROUND_COLUMNS.split(","))
    async with request.app[POOL].connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"""SELECT {cols}, res.display_name AS resident FROM rounds ro
                LEFT JOIN residents res ON res.id = ro.resident_id
                WHERE ro.site = %s AND ro.scheduled_at > %s ORDER BY ro.scheduled_at, ro.room""",
            (site, since),
        )
        rows = await cur.fetchall()
    await audit(request, "read", "rounds", site=site, detail={"entries": len(rows)})
    return json_response(RoundList(entries=[RoundEntry.model_validate(r) for r in rows]))


@routes.post("/api/v1/rounds/confirm", roles=STAFF, request=RoundConfirm, response=Confirmed)
async def confirm_rounds(request: web.Request) -> web.Response:
    """Confirm round entries: staff have seen the digital check (one tap for the whole list)."""
    body = await read_body(request, RoundConfirm)
    user: auth.User = request[USER]
    schema = request.app[SETTINGS].database_schema
    cols = roundstore.ROUND_COLUMNS
    async with (
        request.app[POOL].connection() as conn,
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(
            f"""UPDATE rounds SET confirmed_by = %s, confirmed_at = now()
                WHERE id = ANY(%s) AND confirmed_at IS NULL
                  AND (%s OR site = ANY(%s)) RETURNING {cols}""",
            (user.username, body.ids, user.role == "sysadmin", list(user.sites)),
        )
        rows = await cur.fetchall()
        for row in rows:
            await roundstore.notify_live(conn, schema, row["site"], "round", row)
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
        made = await roundstore.practice_round(
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
    user: auth.User = request[USER]
    schema = request.app[SETTINGS].database_schema
    async with (
        request.app[POOL].connection() as conn,
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as cur,
    ):
        practice = False
        if body.round_id is not None:
            await cur.execute(
                "SELECT practice FROM rounds WHERE id = %s AND site = %s", (body.round_id, site)
            )
            r = await cur.fetchone()
            if r is None:
                raise ProblemError(422, "Invalid request body", "round_id: no such round entry")
            practice = practice or r["practice"]
        if body.alert_id is not None:
            await cur.execute(
                "SELECT practice FROM alerts WHERE id = %s AND site = %s", (body.alert_id, site)
            )
            r = await cur.fetchone()
            if r is None:
                raise ProblemError(422, "Invalid request body", "alert_id: no such alert")
            practice = practice or r["practice"]
        await cur.execute("SELECT 1 FROM rooms WHERE site_id = %s AND id = %s", (site, body.room))
        if await cur.fetchone() is None:
            raise ProblemError(422, "Invalid request body", "room: no such room in this unit")
        await cur.execute(
            f"""INSERT INTO visits (id, site, room, resident_id, started_at, by_user, reason,
                                    round_id, alert_id, practice)
                SELECT %s, %s, %s, (SELECT id FROM residents WHERE site_id = %s AND room_id = %s
                                    AND active LIMIT 1), now(), %s, %s, %s, %s, %s
                RETURNING {roundstore.VISIT_COLUMNS}""",
            (new_id(), site, body.room, site, body.room, user.username, body.reason,
             body.round_id, body.alert_id, practice),
        )  # fmt: skip
        row = await cur.fetchone()
        await roundstore.notify_live(conn, schema, site, "visit", row)
        # Alerting pauses re-sounding while staff are in the room.
        await conn.execute("SELECT pg_notify('nattillsyn_care', %s)", (f"{schema}.visits",))
    await audit(request, "change", "visit start", site=site, room=body.room)
    return json_response(Visit.model_validate(row), status=201)


@routes.post("/api/v1/visits/{visit_id}/end", roles=STAFF, response=Visit)
async def end_visit(request: web.Request) -> web.Response:
    """Register leaving the room."""
    user: auth.User = request[USER]
    schema = request.app[SETTINGS].database_schema
    async with (
        request.app[POOL].connection() as conn,
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await cur.execute(
            f"""UPDATE visits SET ended_at = greatest(now(), started_at)
                WHERE id::text = %s AND ended_at IS NULL AND (%s OR site = ANY(%s))
                RETURNING {roundstore.VISIT_COLUMNS}""",
            (request.match_info["visit_id"], user.role == "sysadmin", list(user.sites)),
        )
        row = await cur.fetchone()
        if row is None:
            raise ProblemError(404, "Not Found", "no such open visit")
        await roundstore.notify_live(conn, schema, row["site"], "visit", row)
        await conn.execute("SELECT pg_notify('nattillsyn_care', %s)", (f"{schema}.visits",))
    await audit(request, "change", "visit end", site=row["site"], room=row["room"])
    return json_response(Visit.model_validate(row))


@routes.get("/api/v1/visits", roles=STAFF, response=VisitList, query=("site",))
async def list_visits(request: web.Request) -> web.Response:
    """Tonight's visits of a unit, newest first."""
    site = await request_site(request)
    since = datetime.now(UTC) - NIGHT
    async with request.app[POOL].connection() as conn:
        rows = await roundstore.visits_since(conn, site, since, 500)
    await audit(request, "read", "visits", site=site, detail={"visits": len(rows)})
    return json_response(VisitList(visits=[Visit.model_validate(r) for r in rows]))
