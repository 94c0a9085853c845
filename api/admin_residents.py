"""Residents and their inclusion: decision, offer, criteria, consent, schedule, pauses, rules.

Every change runs in one transaction that also writes its version (before/after) to
`change_history`, a row to the access log, and recomputes `residents.monitoring_active`
from decision + accepted offer + required criteria + consent; after the commit the
config pusher runs at once and the answer waits (at most 3 s) until the broker has
confirmed the room's new device config. Queries: `queries.residents`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web
from psycopg import AsyncConnection

from nattillsyn.alerting import presets

from .admin_common import (
    AdminRoutes,
    audit_read,
    changing,
    check_unit,
    connection,
    parse_uuid,
    record,
    require_room_in_use,
    resident_site,
    scoped_read,
    settle,
)
from .context import USER, json_response, read_body
from .inclusion import next_local
from .models import (
    AlertingProfile,
    ChangeList,
    ConsentCreate,
    CriteriaAnswers,
    Decision,
    Offer,
    PauseCreate,
    ResidentCreate,
    ResidentDetail,
    ResidentList,
    ResidentUpdate,
    RiskPresetCatalog,
    Schedule,
    Withdrawal,
)
from .problems import ProblemError
from .queries import devices as devices_db
from .queries import residents as db
from .queries import structure as structure_db

routes = AdminRoutes("residents")
ROOM_TAKEN = "the room already has a resident"
Apply = Callable[[AsyncConnection, object, str], Awaitable[None]]


def _by(request: web.Request) -> str:
    return request[USER].username


# -- list, create, read, update ------------------------------------------------------


@routes.get("/api/v1/residents", response=ResidentList, query=("site",), problems=(404,))
async def list_residents(request: web.Request) -> web.Response:
    """Residents of the user's units with their inclusion status."""
    items = await scoped_read(
        request, "residents", db.summaries, lambda rs: {"residents": [str(r.id) for r in rs]}
    )
    return json_response(ResidentList(residents=items))


@routes.post(
    "/api/v1/residents",
    request=ResidentCreate,
    response=ResidentDetail,
    status=201,
    problems=(404, 409),
)
async def create_resident(request: web.Request) -> web.Response:
    """Register a resident in a unit (and room); digital tillsyn is offered by default."""
    body = await read_body(request, ResidentCreate)
    site = await check_unit(request, body.site)
    async with changing(request, ROOM_TAKEN) as conn:
        if body.room:
            await require_room_in_use(conn, site, body.room)
        rid = await db.create(conn, site, body.room, body.display_name)
        detail = await db.detail(conn, rid)
        await record(
            conn,
            request,
            "resident created",
            ("resident", str(rid), "create"),
            None,
            detail,
            site=site,
            room=body.room,
            detail={"resident": str(rid)},
        )
    return json_response(detail, status=201)


@routes.get("/api/v1/residents/{resident_id}", response=ResidentDetail)
async def get_resident(request: web.Request) -> web.Response:
    """A resident's whole inclusion: decision, offer, criteria, consents, schedule, device."""
    async with connection(request) as conn:
        rid, site = await resident_site(conn, request)
        detail = await db.detail(conn, rid)
    await audit_read(
        request, "resident", site=site, room=detail.resident.room, detail={"resident": str(rid)}
    )
    return json_response(detail)


def _on_resident(method: str, tail: str, body: type | None = None, **kw):
    """A route on one resident's inclusion; it answers with the whole inclusion."""
    path = f"/api/v1/residents/{{resident_id}}{tail}"
    return routes.route(method, path, request=body, response=ResidentDetail, **kw)


# change -> (entity in change_history, the section of the detail its version holds)
CHANGES = {
    "update": ("resident", "resident"),
    "decision": ("inclusion", "inclusion"),
    "offer": ("inclusion", "inclusion"),
    "criteria": ("inclusion", "criteria"),
    "consent given": ("consent", "consents"),
    "consent withdrawn": ("consent", "consents"),
    "schedule": ("schedule", "schedule"),
    "pause": ("pause", "pauses"),
    "pause ended": ("pause", "pauses"),
    "alerting profile": ("alerting", "alerting"),
}


async def _change(
    request: web.Request, change: str, apply: Apply, status: int = 200
) -> web.Response:
    """Run `apply(conn, rid, site)` in a transaction with versioning, audit and monitoring."""
    entity, section = CHANGES[change]
    async with changing(request, ROOM_TAKEN) as conn:
        rid, site = await resident_site(conn, request)
        before = await db.detail(conn, rid)
        await apply(conn, rid, site)
        await db.maintain_monitoring(conn, rid)
        after = await db.detail(conn, rid)
        b, a = before.model_dump(mode="json"), after.model_dump(mode="json")
        b_part, a_part = b.get(section), a.get(section)
        monitoring = (before.resident.monitoring_active, after.resident.monitoring_active)
        if section != "resident" and monitoring[0] != monitoring[1]:
            b_part = {"section": b_part, "monitoring_active": monitoring[0]}
            a_part = {"section": a_part, "monitoring_active": monitoring[1]}
        log = {"resident": str(rid), "monitoring_active": monitoring[1]}
        await record(
            conn,
            request,
            f"resident {change}",
            (entity, str(rid), change),
            b_part,
            a_part,
            site=site,
            room=after.resident.room,
            detail=log,
        )
    await settle(request)
    if after.device is not None:  # what the device was just told
        async with connection(request) as conn:
            now_told = await devices_db.view(conn, after.device.site, after.device.id)
        after = after.model_copy(update={"device": now_told or after.device})
    return json_response(after, status=status)


@_on_resident("patch", "", ResidentUpdate, problems=(409,))
async def update_resident(request: web.Request) -> web.Response:
    """Rename, move to another room, or discharge (active=false stops monitoring)."""
    body = await read_body(request, ResidentUpdate)
    cols = {"display_name": "display_name", "room": "room_id", "active": "active"}
    fields = {cols[k]: v for k, v in body.model_dump(exclude_none=True).items()}

    async def apply(conn, rid, site):
        if body.room is not None:
            await require_room_in_use(conn, site, body.room)
        await db.update(conn, rid, fields)

    return await _change(request, "update", apply)


# -- inclusion -----------------------------------------------------------------------


@_on_resident("put", "/decision", Decision)
async def set_decision(request: web.Request) -> web.Response:
    """Record the needs-assessment decision (biståndsbeslut) naming tillsyn."""
    body = await read_body(request, Decision)
    return await _change(request, "decision", lambda conn, rid, _: db.set_decision(conn, rid, body))


@_on_resident("put", "/offer", Offer)
async def set_offer(request: web.Request) -> web.Response:
    """Record the offer of digital tillsyn (the default) and the resident's answer."""
    body, by = await read_body(request, Offer), _by(request)
    return await _change(request, "offer", lambda conn, rid, _: db.set_offer(conn, rid, body, by))


@_on_resident("put", "/criteria", CriteriaAnswers)
async def set_criteria(request: web.Request) -> web.Response:
    """Answer the unit's inclusion criteria checklist."""
    body, by = await read_body(request, CriteriaAnswers), _by(request)

    async def apply(conn, rid, site):
        _, crit = await structure_db.criteria_for(conn, site)
        known = {c[0] for c in crit}
        unknown = [a.key for a in body.answers if a.key not in known]
        if unknown:
            raise ProblemError(
                422, "Invalid request body", f"not a criterion of the unit: {', '.join(unknown)}"
            )
        await db.answer_criteria(conn, rid, body.answers, by)

    return await _change(request, "criteria", apply)


@_on_resident("post", "/consents", ConsentCreate, status=201)
async def add_consent(request: web.Request) -> web.Response:
    """Record informed consent: who, when, scope, and the cohabitants' consent."""
    body = await read_body(request, ConsentCreate)
    if body.given_at > datetime.now(UTC) + timedelta(minutes=5):
        raise ProblemError(422, "Invalid request body", "given_at: consent cannot be in the future")
    by = _by(request)
    return await _change(
        request,
        "consent given",
        lambda conn, rid, _: db.add_consent(conn, rid, body, by),
        status=201,
    )


@_on_resident(
    "post", "/consents/{consent_id}/withdraw", Withdrawal, request_required=False, problems=(409,)
)
async def withdraw_consent(request: web.Request) -> web.Response:
    """Withdraw a consent: monitoring stops at once."""
    body = await read_body(request, Withdrawal)
    cid = parse_uuid(request.match_info["consent_id"], "consent")
    by = _by(request)

    async def apply(conn, rid, site):
        row = await db.consent(conn, rid, cid)
        if row is None:
            raise ProblemError(404, "Not Found", "no such consent")
        if row[0] is not None:
            raise ProblemError(409, "Conflict", "consent already withdrawn")
        await db.withdraw_consent(conn, cid, by, body.reason)

    return await _change(request, "consent withdrawn", apply)


# -- schedule, pauses, alerting ----------------------------------------------------------


@_on_resident("put", "/schedule", Schedule)
async def set_schedule(request: web.Request) -> web.Response:
    """Set the nightly monitoring window and the agreed tillsyn times (digital/physical)."""
    body = await read_body(request, Schedule)
    times = {t.at.replace(second=0, microsecond=0): t.mode for t in body.tillsyn_times}
    return await _change(
        request,
        "schedule",
        lambda conn, rid, _: db.set_schedule(conn, rid, body.monitor_from, body.monitor_to, times),
    )


@_on_resident("post", "/pauses", PauseCreate, request_required=False, status=201)
async def add_pause(request: web.Request) -> web.Response:
    """Pause monitoring (by default from now to the end of tonight's window)."""
    body, by = await read_body(request, PauseCreate), _by(request)

    async def apply(conn, rid, site):
        tz, _from, to, db_now = await db.window(conn, rid)
        starts = body.starts_at or db_now  # the transaction's now(): the pause covers this moment
        if body.ends_at is not None:
            ends = body.ends_at
        elif _from == to:
            ends = starts + timedelta(hours=12)
        else:
            ends = next_local(starts, to, ZoneInfo(tz))
        if ends <= starts:
            raise ProblemError(422, "Invalid request body", "ends_at: must be after starts_at")
        if ends - starts > timedelta(days=366):
            raise ProblemError(422, "Invalid request body", "ends_at: a pause is at most a year")
        await db.add_pause(conn, rid, starts, ends, body.reason, by)

    return await _change(request, "pause", apply, status=201)


@_on_resident("post", "/pauses/{pause_id}/end", problems=(409,))
async def end_pause(request: web.Request) -> web.Response:
    """End a pause now (monitoring resumes if the window is open)."""
    pid = parse_uuid(request.match_info["pause_id"], "pause")

    async def apply(conn, rid, site):
        row = await db.pause(conn, rid, pid)
        if row is None:
            raise ProblemError(404, "Not Found", "no such pause")
        starts, ends, now = row
        if ends <= now:
            raise ProblemError(409, "Conflict", "pause already ended")
        # A pause not yet begun is cancelled: its end moves to its start + 1 µs.
        await db.end_pause(conn, pid, max(now, starts + timedelta(microseconds=1)))

    return await _change(request, "pause ended", apply)


def validate_profile(profile: AlertingProfile) -> AlertingProfile:
    """Check the preset and overrides against alerting's models."""
    if profile.risk_preset not in presets.PRESETS:
        raise ProblemError(
            422, "Invalid request body", f"risk_preset: one of {', '.join(sorted(presets.PRESETS))}"
        )
    checked = presets.RuleOverrides.model_validate(profile.rule_overrides)
    return profile.model_copy(
        update={"rule_overrides": checked.model_dump(mode="json", exclude_none=True)}
    )


def preset_catalog() -> RiskPresetCatalog:
    cat = presets.catalog()
    return RiskPresetCatalog(
        default=cat["default"], presets=cat["presets"], overrides_schema=cat["overrides_schema"]
    )


@routes.get("/api/v1/risk-presets", response=RiskPresetCatalog)
async def risk_presets(request: web.Request) -> web.Response:
    """The risk presets a resident can get, and the schema of rule overrides."""
    await audit_read(request, "risk presets")
    return json_response(preset_catalog())


@_on_resident("put", "/alerting", AlertingProfile)
async def set_alerting(request: web.Request) -> web.Response:
    """Choose the risk preset and rule overrides alerting uses for this resident."""
    body = validate_profile(await read_body(request, AlertingProfile))
    return await _change(
        request, "alerting profile", lambda conn, rid, _: db.set_alerting(conn, rid, body)
    )


@routes.get("/api/v1/residents/{resident_id}/history", response=ChangeList)
async def history(request: web.Request) -> web.Response:
    """Every version of the resident's inclusion: who changed what, when, before and after."""
    async with connection(request) as conn:
        rid, site = await resident_site(conn, request)
        changes = await db.history(conn, rid)
    await audit_read(request, "resident history", site=site, detail={"resident": str(rid)})
    return json_response(ChangeList(changes=changes))
