"""Residents and their inclusion: decision, offer, criteria, consent, schedule, pauses, rules.

Every change runs in one transaction that also writes its version (before/after) to
`change_history`, a row to the access log, and recomputes `residents.monitoring_active`
from decision + accepted offer + required criteria + consent; after the commit the
config pusher runs at once and the answer waits (at most 3 s) until the broker has
confirmed the room's new device config.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
from aiohttp import web
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from nattillsyn.alerting import presets

from .admin_common import (
    MANAGERS,
    AdminRoutes,
    audit_change,
    check_unit,
    criteria_for,
    inclusion_status,
    maintain_monitoring,
    parse_uuid,
    purpose,
    resident_site,
    settle,
    visible_sites,
)
from .admin_devices import device_views
from .context import POOL, USER, audit, json_response, read_body, record_change
from .inclusion import _next_local
from .models import (
    AlertingProfile,
    ChangeEntry,
    ChangeList,
    Cohabitant,
    Consent,
    ConsentCreate,
    CriteriaAnswers,
    CriterionState,
    Decision,
    Inclusion,
    Offer,
    Pause,
    PauseCreate,
    ResidentCreate,
    ResidentDetail,
    ResidentList,
    ResidentSummary,
    ResidentUpdate,
    RiskPresetCatalog,
    Schedule,
    TillsynTime,
    Withdrawal,
)
from .problems import ProblemError

routes = AdminRoutes("residents")

SUMMARY_SQL = """
    SELECT r.id, r.site_id, r.room_id, r.display_name, r.active, r.monitoring_active,
           r.risk_preset,
           CASE WHEN r.room_id IS NULL THEN false
                ELSE monitoring_active(r.site_id, r.room_id, now()) END AS monitoring_now
    FROM residents r"""


async def _summaries(conn: AsyncConnection, where: str, args: tuple) -> list[ResidentSummary]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"{SUMMARY_SQL} WHERE {where} ORDER BY r.site_id, r.room_id, r.id", args)
        rows = await cur.fetchall()
    out = []
    for r in rows:
        st = await inclusion_status(conn, r["id"])
        out.append(
            ResidentSummary(
                id=r["id"],
                site=r["site_id"],
                room=r["room_id"],
                display_name=r["display_name"],
                active=r["active"],
                monitoring_active=r["monitoring_active"],
                monitoring_now=bool(r["monitoring_now"]) and r["monitoring_active"],
                missing=st.missing,
                risk_preset=r["risk_preset"],
            )
        )
    return out


async def _detail(conn: AsyncConnection, rid: uuid.UUID) -> ResidentDetail:
    (summary,) = await _summaries(conn, "r.id = %s", (rid,))
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM inclusions WHERE resident_id = %s", (rid,))
        inc = await cur.fetchone() or {}
        await cur.execute(
            "SELECT criterion, answer, note, answered_by FROM inclusion_answers "
            "WHERE resident_id = %s",
            (rid,),
        )
        answers = {r["criterion"]: r for r in await cur.fetchall()}
        await cur.execute(
            "SELECT * FROM consents WHERE resident_id = %s ORDER BY given_at DESC, recorded_at DESC",
            (rid,),
        )
        consents = await cur.fetchall()
        await cur.execute(
            "SELECT monitor_from, monitor_to, risk_preset, rule_overrides FROM residents "
            "WHERE id = %s",
            (rid,),
        )
        res = await cur.fetchone()
        await cur.execute(
            "SELECT at_time, mode FROM tillsyn_times WHERE resident_id = %s ORDER BY at_time",
            (rid,),
        )
        times = await cur.fetchall()
        await cur.execute(
            """SELECT id, starts_at, ends_at, reason, created_by FROM monitoring_pauses
               WHERE resident_id = %s AND ends_at > now() - interval '7 days'
               ORDER BY starts_at DESC""",
            (rid,),
        )
        pauses = await cur.fetchall()
    _, crit = await criteria_for(conn, summary.site)
    device = None
    if summary.room:
        views = await device_views(
            conn,
            "d.site_id = %s AND d.room_id = %s AND d.status <> 'retired'",
            (summary.site, summary.room),
        )
        managed = [v for v in views if v.managed] or views
        device = managed[0] if managed else None
    return ResidentDetail(
        resident=summary,
        inclusion=Inclusion(
            **{k: v for k, v in inc.items() if k in Inclusion.model_fields and v is not None}
        ),
        criteria=[
            CriterionState(
                key=k,
                label_sv=sv,
                label_en=en,
                required=req,
                answer=answers.get(k, {}).get("answer"),
                note=answers.get(k, {}).get("note"),
                answered_by=answers.get(k, {}).get("answered_by"),
            )
            for k, sv, en, req in crit
        ],
        consents=[
            Consent(
                id=c["id"],
                given_by=c["given_by"],
                relation=c["relation"],
                given_at=c["given_at"],
                scope=c["scope"],
                cohabitants=[Cohabitant(**x) for x in c["cohabitants"]],
                note=c["note"],
                recorded_by=c["recorded_by"],
                recorded_at=c["recorded_at"],
                withdrawn_at=c["withdrawn_at"],
                withdrawn_by=c["withdrawn_by"],
                withdrawal_reason=c["withdrawal_reason"],
            )
            for c in consents
        ],
        schedule=Schedule(
            monitor_from=res["monitor_from"],
            monitor_to=res["monitor_to"],
            tillsyn_times=[TillsynTime(at=t["at_time"], mode=t["mode"]) for t in times],
        ),
        pauses=[Pause(**p) for p in pauses],
        alerting=AlertingProfile(
            risk_preset=res["risk_preset"], rule_overrides=res["rule_overrides"] or {}
        ),
        device=device,
    )


async def _room_free(conn: AsyncConnection, site: str, room: str) -> None:
    row = await (
        await conn.execute("SELECT active FROM rooms WHERE site_id = %s AND id = %s", (site, room))
    ).fetchone()
    if row is None or not row[0]:
        raise ProblemError(422, "Invalid request body", f"no active room {room!r} in the unit")


# -- list, create, read, update ------------------------------------------------------


@routes.get(
    "/api/v1/residents", roles=MANAGERS, response=ResidentList, query=("site",), problems=(404,)
)
async def list_residents(request: web.Request) -> web.Response:
    """Residents of the user's units with their inclusion status."""
    sites = visible_sites(request)
    async with request.app[POOL].connection() as conn:
        if sites is None:
            items = await _summaries(conn, "true", ())
        else:
            items = await _summaries(conn, "r.site_id = ANY(%s)", (sites,))
    await audit(
        request,
        "read",
        "residents",
        purpose=purpose(request, "administration"),
        site=sites[0] if sites and len(sites) == 1 else None,
        detail={"residents": [str(r.id) for r in items]},
    )
    return json_response(ResidentList(residents=items))


@routes.post(
    "/api/v1/residents",
    roles=MANAGERS,
    request=ResidentCreate,
    response=ResidentDetail,
    status=201,
    problems=(404, 409),
)
async def create_resident(request: web.Request) -> web.Response:
    """Register a resident in a unit (and room); digital tillsyn is offered by default."""
    body = await read_body(request, ResidentCreate)
    site = await check_unit(request, body.site)
    try:
        async with request.app[POOL].connection() as conn, conn.transaction():
            if body.room:
                await _room_free(conn, site, body.room)
            row = await (
                await conn.execute(
                    """INSERT INTO residents (site_id, room_id, display_name, monitoring_active)
                       VALUES (%s, %s, %s, false) RETURNING id""",
                    (site, body.room, body.display_name),
                )
            ).fetchone()
            rid = row[0]
            await conn.execute("INSERT INTO inclusions (resident_id) VALUES (%s)", (rid,))
            detail = await _detail(conn, rid)
            await record_change(
                conn, request, "resident", str(rid), "create", None,
                detail.model_dump(mode="json"), site=site,
            )  # fmt: skip
            await audit_change(request, "resident created", site=site, room=body.room,
                detail={"resident": str(rid)}, conn=conn,
            )  # fmt: skip
    except psycopg.errors.UniqueViolation:
        raise ProblemError(409, "Conflict", "the room already has a resident") from None
    return json_response(detail, status=201)


@routes.get("/api/v1/residents/{resident_id}", roles=MANAGERS, response=ResidentDetail)
async def get_resident(request: web.Request) -> web.Response:
    """A resident's whole inclusion: decision, offer, criteria, consents, schedule, device."""
    async with request.app[POOL].connection() as conn:
        rid, site = await resident_site(conn, request)
        detail = await _detail(conn, rid)
    await audit(
        request, "read", "resident", purpose=purpose(request, "administration"), site=site,
        room=detail.resident.room, detail={"resident": str(rid)},
    )  # fmt: skip
    return json_response(detail)


async def _change(
    request: web.Request,
    entity: str,
    change: str,
    apply,
    *,
    section: str,
) -> web.Response:
    """Run `apply(conn, rid, site)` in a transaction with versioning, audit and monitoring."""
    try:
        async with request.app[POOL].connection() as conn, conn.transaction():
            rid, site = await resident_site(conn, request)
            before = await _detail(conn, rid)
            await apply(conn, rid, site)
            await maintain_monitoring(conn, rid)
            after = await _detail(conn, rid)
            b, a = before.model_dump(mode="json"), after.model_dump(mode="json")
            b_part = b if section == "*" else b.get(section)
            a_part = a if section == "*" else a.get(section)
            monitoring = (before.resident.monitoring_active, after.resident.monitoring_active)
            if section != "resident" and monitoring[0] != monitoring[1]:
                b_part = {"section": b_part, "monitoring_active": monitoring[0]}
                a_part = {"section": a_part, "monitoring_active": monitoring[1]}
            await record_change(conn, request, entity, str(rid), change, b_part, a_part, site=site)
            await audit_change(request, f"resident {change}", site=site, room=after.resident.room,
                detail={"resident": str(rid), "monitoring_active": monitoring[1]}, conn=conn,
            )  # fmt: skip
    except psycopg.errors.UniqueViolation:
        raise ProblemError(409, "Conflict", "the room already has a resident") from None
    await settle(request)
    if after.device is not None:  # what the device was just told
        async with request.app[POOL].connection() as conn:
            views = await device_views(
                conn, "d.site_id = %s AND d.id = %s", (after.device.site, after.device.id)
            )
        after = after.model_copy(update={"device": views[0] if views else after.device})
    return json_response(after)


@routes.patch(
    "/api/v1/residents/{resident_id}",
    roles=MANAGERS,
    request=ResidentUpdate,
    response=ResidentDetail,
    problems=(409,),
)
async def update_resident(request: web.Request) -> web.Response:
    """Rename, move to another room, or discharge (active=false stops monitoring)."""
    body = await read_body(request, ResidentUpdate)

    async def apply(conn, rid, site):
        if body.room is not None:
            await _room_free(conn, site, body.room)
        fields = body.model_dump(exclude_none=True)
        cols = {"display_name": "display_name", "room": "room_id", "active": "active"}
        for k, v in fields.items():
            await conn.execute(f"UPDATE residents SET {cols[k]} = %s WHERE id = %s", (v, rid))
        if body.active is False:  # a discharged resident leaves the room free
            await conn.execute("UPDATE residents SET room_id = NULL WHERE id = %s", (rid,))

    return await _change(request, "resident", "update", apply, section="resident")


# -- inclusion -----------------------------------------------------------------------


@routes.put(
    "/api/v1/residents/{resident_id}/decision",
    roles=MANAGERS,
    request=Decision,
    response=ResidentDetail,
)
async def set_decision(request: web.Request) -> web.Response:
    """Record the needs-assessment decision (biståndsbeslut) naming tillsyn."""
    body = await read_body(request, Decision)

    async def apply(conn, rid, site):
        await conn.execute(
            """INSERT INTO inclusions (resident_id, decision_reference, decision_date,
                                       decision_note, updated_at)
               VALUES (%s, %s, %s, %s, now())
               ON CONFLICT (resident_id) DO UPDATE SET decision_reference = EXCLUDED.decision_reference,
                   decision_date = EXCLUDED.decision_date, decision_note = EXCLUDED.decision_note,
                   updated_at = now()""",
            (rid, body.reference, body.date, body.note),
        )

    return await _change(request, "inclusion", "decision", apply, section="inclusion")


@routes.put(
    "/api/v1/residents/{resident_id}/offer",
    roles=MANAGERS,
    request=Offer,
    response=ResidentDetail,
)
async def set_offer(request: web.Request) -> web.Response:
    """Record the offer of digital tillsyn (the default) and the resident's answer."""
    body = await read_body(request, Offer)
    by = request[USER].username

    async def apply(conn, rid, site):
        await conn.execute(
            """INSERT INTO inclusions (resident_id, offered_at, offered_by, offer_answer,
                                       answered_at, physical_reason, updated_at)
               VALUES (%(rid)s, now(), %(by)s, %(a)s,
                       CASE WHEN %(a)s = 'pending' THEN NULL ELSE now() END, %(why)s, now())
               ON CONFLICT (resident_id) DO UPDATE SET
                   offered_at = coalesce(inclusions.offered_at, now()),
                   offered_by = coalesce(inclusions.offered_by, %(by)s),
                   offer_answer = %(a)s,
                   answered_at = CASE WHEN %(a)s = 'pending' THEN NULL ELSE now() END,
                   physical_reason = %(why)s, updated_at = now()""",
            {"rid": rid, "by": by, "a": body.answer, "why": body.physical_reason},
        )

    return await _change(request, "inclusion", "offer", apply, section="inclusion")


@routes.put(
    "/api/v1/residents/{resident_id}/criteria",
    roles=MANAGERS,
    request=CriteriaAnswers,
    response=ResidentDetail,
)
async def set_criteria(request: web.Request) -> web.Response:
    """Answer the unit's inclusion criteria checklist."""
    body = await read_body(request, CriteriaAnswers)
    by = request[USER].username

    async def apply(conn, rid, site):
        _, crit = await criteria_for(conn, site)
        known = {c[0] for c in crit}
        unknown = [a.key for a in body.answers if a.key not in known]
        if unknown:
            raise ProblemError(
                422, "Invalid request body", f"not a criterion of the unit: {', '.join(unknown)}"
            )
        for a in body.answers:
            await conn.execute(
                """INSERT INTO inclusion_answers (resident_id, criterion, answer, note, answered_by)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (resident_id, criterion) DO UPDATE SET answer = EXCLUDED.answer,
                       note = EXCLUDED.note, answered_by = EXCLUDED.answered_by,
                       answered_at = now()""",
                (rid, a.key, a.answer, a.note, by),
            )

    return await _change(request, "inclusion", "criteria", apply, section="criteria")


@routes.post(
    "/api/v1/residents/{resident_id}/consents",
    roles=MANAGERS,
    request=ConsentCreate,
    response=ResidentDetail,
    status=201,
)
async def add_consent(request: web.Request) -> web.Response:
    """Record informed consent: who, when, scope, and the cohabitants' consent."""
    body = await read_body(request, ConsentCreate)
    if body.given_at > datetime.now(UTC) + timedelta(minutes=5):
        raise ProblemError(422, "Invalid request body", "given_at: consent cannot be in the future")
    by = request[USER].username

    async def apply(conn, rid, site):
        await conn.execute(
            """INSERT INTO consents (resident_id, given_by, relation, given_at, scope, cohabitants,
                                     note, recorded_by)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                rid,
                body.given_by,
                body.relation,
                body.given_at,
                Jsonb(sorted(set(body.scope))),
                Jsonb([c.model_dump() for c in body.cohabitants]),
                body.note,
                by,
            ),
        )

    resp = await _change(request, "consent", "consent given", apply, section="consents")
    resp.set_status(201)
    return resp


@routes.post(
    "/api/v1/residents/{resident_id}/consents/{consent_id}/withdraw",
    roles=MANAGERS,
    request=Withdrawal,
    request_required=False,
    response=ResidentDetail,
    problems=(409,),
)
async def withdraw_consent(request: web.Request) -> web.Response:
    """Withdraw a consent: monitoring stops at once."""
    body = await read_body(request, Withdrawal)
    cid = parse_uuid(request.match_info["consent_id"], "consent")
    by = request[USER].username

    async def apply(conn, rid, site):
        cur = await conn.execute(
            "SELECT withdrawn_at FROM consents WHERE id = %s AND resident_id = %s", (cid, rid)
        )
        row = await cur.fetchone()
        if row is None:
            raise ProblemError(404, "Not Found", "no such consent")
        if row[0] is not None:
            raise ProblemError(409, "Conflict", "consent already withdrawn")
        await conn.execute(
            """UPDATE consents SET withdrawn_at = now(), withdrawn_by = %s, withdrawal_reason = %s
               WHERE id = %s""",
            (by, body.reason, cid),
        )

    return await _change(request, "consent", "consent withdrawn", apply, section="consents")


# -- schedule, pauses, alerting ----------------------------------------------------------


@routes.put(
    "/api/v1/residents/{resident_id}/schedule",
    roles=MANAGERS,
    request=Schedule,
    response=ResidentDetail,
)
async def set_schedule(request: web.Request) -> web.Response:
    """Set the nightly monitoring window and the agreed tillsyn times (digital/physical)."""
    body = await read_body(request, Schedule)
    times = {t.at.replace(second=0, microsecond=0): t.mode for t in body.tillsyn_times}

    async def apply(conn, rid, site):
        await conn.execute(
            "UPDATE residents SET monitor_from = %s, monitor_to = %s WHERE id = %s",
            (body.monitor_from.replace(tzinfo=None), body.monitor_to.replace(tzinfo=None), rid),
        )
        await conn.execute("DELETE FROM tillsyn_times WHERE resident_id = %s", (rid,))
        for at, mode in sorted(times.items()):
            await conn.execute(
                "INSERT INTO tillsyn_times (resident_id, at_time, mode) VALUES (%s, %s, %s)",
                (rid, at.replace(tzinfo=None), mode),
            )

    return await _change(request, "schedule", "schedule", apply, section="schedule")


@routes.post(
    "/api/v1/residents/{resident_id}/pauses",
    roles=MANAGERS,
    request=PauseCreate,
    request_required=False,
    response=ResidentDetail,
    status=201,
)
async def add_pause(request: web.Request) -> web.Response:
    """Pause monitoring (by default from now to the end of tonight's window)."""
    body = await read_body(request, PauseCreate)
    by = request[USER].username

    async def apply(conn, rid, site):
        row = await (
            await conn.execute(
                """SELECT s.timezone, r.monitor_from, r.monitor_to, now() FROM residents r
                   JOIN sites s ON s.id = r.site_id WHERE r.id = %s""",
                (rid,),
            )
        ).fetchone()
        tz, _from, to, db_now = row  # the transaction's now(): the pause covers this moment
        starts = body.starts_at or db_now
        if body.ends_at is not None:
            ends = body.ends_at
        elif _from == to:
            ends = starts + timedelta(hours=12)
        else:
            ends = _next_local(starts, to, ZoneInfo(tz))
        if ends <= starts:
            raise ProblemError(422, "Invalid request body", "ends_at: must be after starts_at")
        if ends - starts > timedelta(days=366):
            raise ProblemError(422, "Invalid request body", "ends_at: a pause is at most a year")
        await conn.execute(
            """INSERT INTO monitoring_pauses (resident_id, starts_at, ends_at, reason, created_by)
               VALUES (%s, %s, %s, %s, %s)""",
            (rid, starts, ends, body.reason, by),
        )

    resp = await _change(request, "pause", "pause", apply, section="pauses")
    resp.set_status(201)
    return resp


@routes.post(
    "/api/v1/residents/{resident_id}/pauses/{pause_id}/end",
    roles=MANAGERS,
    response=ResidentDetail,
    problems=(409,),
)
async def end_pause(request: web.Request) -> web.Response:
    """End a pause now (monitoring resumes if the window is open)."""
    pid = parse_uuid(request.match_info["pause_id"], "pause")

    async def apply(conn, rid, site):
        row = await (
            await conn.execute(
                "SELECT starts_at, ends_at FROM monitoring_pauses WHERE id = %s AND resident_id = %s",
                (pid, rid),
            )
        ).fetchone()
        if row is None:
            raise ProblemError(404, "Not Found", "no such pause")
        now = (await (await conn.execute("SELECT now()")).fetchone())[0]
        if row[1] <= now:
            raise ProblemError(409, "Conflict", "pause already ended")
        # A pause not yet begun is cancelled: its end moves to its start + 1 µs.
        end = max(now, row[0] + timedelta(microseconds=1))
        await conn.execute("UPDATE monitoring_pauses SET ends_at = %s WHERE id = %s", (end, pid))

    return await _change(request, "pause", "pause ended", apply, section="pauses")


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


@routes.get("/api/v1/risk-presets", roles=MANAGERS, response=RiskPresetCatalog)
async def risk_presets(request: web.Request) -> web.Response:
    """The risk presets a resident can get, and the schema of rule overrides."""
    await audit(request, "read", "risk presets", purpose=purpose(request, "administration"))
    return json_response(preset_catalog())


@routes.put(
    "/api/v1/residents/{resident_id}/alerting",
    roles=MANAGERS,
    request=AlertingProfile,
    response=ResidentDetail,
)
async def set_alerting(request: web.Request) -> web.Response:
    """Choose the risk preset and rule overrides alerting uses for this resident."""
    body = validate_profile(await read_body(request, AlertingProfile))

    async def apply(conn, rid, site):
        await conn.execute(
            "UPDATE residents SET risk_preset = %s, rule_overrides = %s WHERE id = %s",
            (body.risk_preset, Jsonb(body.rule_overrides), rid),
        )

    return await _change(request, "alerting", "alerting profile", apply, section="alerting")


@routes.get("/api/v1/residents/{resident_id}/history", roles=MANAGERS, response=ChangeList)
async def history(request: web.Request) -> web.Response:
    """Every version of the resident's inclusion: who changed what, when, before and after."""
    async with request.app[POOL].connection() as conn:
        rid, site = await resident_site(conn, request)
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                """SELECT id, at, username, role, entity, entity_id, change, before, after
                   FROM change_history WHERE entity_id = %s ORDER BY id DESC LIMIT 500""",
                (str(rid),),
            )
            rows = await cur.fetchall()
    await audit(
        request, "read", "resident history", purpose=purpose(request, "administration"),
        site=site, detail={"resident": str(rid)},
    )  # fmt: skip
    return json_response(ChangeList(changes=[ChangeEntry(**r) for r in rows]))
