"""Residents and their inclusion: decision, offer, criteria answers, consents, schedule,
pauses and alerting profile; the inclusion status and `residents.monitoring_active`."""

from __future__ import annotations

import uuid
from datetime import datetime, time

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ..inclusion import ConsentFacts, Facts, Status, status
from ..inclusion import Criterion as CriterionFact
from ..models import (
    AlertingProfile,
    ChangeEntry,
    Cohabitant,
    Consent,
    ConsentCreate,
    CriterionAnswer,
    CriterionState,
    Decision,
    Inclusion,
    Offer,
    Pause,
    ResidentDetail,
    ResidentSummary,
    Schedule,
    TillsynTime,
)
from . import devices
from .rows import update_row
from .structure import criteria_for

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


async def summaries(conn: AsyncConnection, sites: list[str] | None) -> list[ResidentSummary]:
    """The residents of `sites` (None: every unit) with their inclusion status."""
    if sites is None:
        return await _summaries(conn, "true", ())
    return await _summaries(conn, "r.site_id = ANY(%s)", (sites,))


async def resident_unit(conn: AsyncConnection, rid: uuid.UUID) -> str | None:
    cur = await conn.execute("SELECT site_id FROM residents WHERE id = %s", (rid,))
    row = await cur.fetchone()
    return row[0] if row else None


def _consent(c: dict) -> Consent:
    fields = {k: c[k] for k in Consent.model_fields}
    return Consent(**fields | {"cohabitants": [Cohabitant(**x) for x in c["cohabitants"]]})


async def detail(conn: AsyncConnection, rid: uuid.UUID) -> ResidentDetail:
    """A resident's whole inclusion: decision, offer, criteria, consents, schedule, device."""
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
    device = await devices.room_device(conn, summary.site, summary.room) if summary.room else None
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
        consents=[_consent(c) for c in consents],
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


async def inclusion_status(conn: AsyncConnection, rid: uuid.UUID) -> Status:
    res = await (
        await conn.execute(
            """SELECT r.site_id, r.active, r.room_id IS NOT NULL, i.decision_reference,
                      i.decision_date, coalesce(i.offer_answer, 'pending'),
                      (now() AT TIME ZONE s.timezone)::date
               FROM residents r JOIN sites s ON s.id = r.site_id
               LEFT JOIN inclusions i ON i.resident_id = r.id WHERE r.id = %s""",
            (rid,),
        )
    ).fetchone()
    site, active, has_room, ref, ddate, answer, today = res
    _, crit = await criteria_for(conn, site)
    answers = dict(
        await (
            await conn.execute(
                "SELECT criterion, answer FROM inclusion_answers WHERE resident_id = %s", (rid,)
            )
        ).fetchall()
    )
    consents = [
        ConsentFacts(
            withdrawn=w is not None,
            cohabitants_consent=all(c.get("consented") for c in cohab or []),
            covers_monitoring="motion_analysis" in (scope or []),
        )
        for w, cohab, scope in await (
            await conn.execute(
                """SELECT withdrawn_at, cohabitants, scope FROM consents WHERE resident_id = %s
                   ORDER BY given_at DESC, recorded_at DESC""",
                (rid,),
            )
        ).fetchall()
    ]
    return status(
        Facts(
            active=active,
            has_room=has_room,
            decision_reference=ref,
            decision_date=ddate,
            offer_answer=answer,
            criteria=[CriterionFact(k, req) for k, _sv, _en, req in crit],
            answers=answers,
            consents=consents,
        ),
        today,
    )


async def maintain_monitoring(conn: AsyncConnection, rid: uuid.UUID) -> Status:
    """Set `residents.monitoring_active` from decision, offer, criteria and consent."""
    st = await inclusion_status(conn, rid)
    await conn.execute(
        "UPDATE residents SET monitoring_active = %s WHERE id = %s AND monitoring_active <> %s",
        (st.monitoring_allowed, rid, st.monitoring_allowed),
    )
    return st


async def history(conn: AsyncConnection, rid: uuid.UUID) -> list[ChangeEntry]:
    """Every version of the resident's inclusion, newest first (at most 500)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT id, at, username, role, entity, entity_id, change, before, after
               FROM change_history WHERE entity_id = %s ORDER BY id DESC LIMIT 500""",
            (str(rid),),
        )
        return [ChangeEntry(**r) for r in await cur.fetchall()]


# -- changes -------------------------------------------------------------------------------


async def create(conn: AsyncConnection, site: str, room: str | None, name: str) -> uuid.UUID:
    """A new resident, not monitored, with an empty inclusion."""
    cur = await conn.execute(
        """INSERT INTO residents (site_id, room_id, display_name, monitoring_active)
           VALUES (%s, %s, %s, false) RETURNING id""",
        (site, room, name),
    )
    rid = (await cur.fetchone())[0]
    await conn.execute("INSERT INTO inclusions (resident_id) VALUES (%s)", (rid,))
    return rid


async def update(conn: AsyncConnection, rid: uuid.UUID, fields: dict) -> None:
    """Rename, move (`room_id`) or discharge (`active` false: the room is left free)."""
    if fields.get("active") is False:
        fields = fields | {"room_id": None}
    await update_row(conn, "residents", {"id": rid}, fields)


async def set_decision(conn: AsyncConnection, rid: uuid.UUID, body: Decision) -> None:
    await conn.execute(
        """INSERT INTO inclusions (resident_id, decision_reference, decision_date,
                                   decision_note, updated_at)
           VALUES (%s, %s, %s, %s, now())
           ON CONFLICT (resident_id) DO UPDATE SET decision_reference = EXCLUDED.decision_reference,
               decision_date = EXCLUDED.decision_date, decision_note = EXCLUDED.decision_note,
               updated_at = now()""",
        (rid, body.reference, body.date, body.note),
    )


async def set_offer(conn: AsyncConnection, rid: uuid.UUID, body: Offer, by: str) -> None:
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


async def answer_criteria(
    conn: AsyncConnection, rid: uuid.UUID, answers: list[CriterionAnswer], by: str
) -> None:
    for a in answers:
        await conn.execute(
            """INSERT INTO inclusion_answers (resident_id, criterion, answer, note, answered_by)
               VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (resident_id, criterion) DO UPDATE SET answer = EXCLUDED.answer,
                   note = EXCLUDED.note, answered_by = EXCLUDED.answered_by,
                   answered_at = now()""",
            (rid, a.key, a.answer, a.note, by),
        )


async def add_consent(conn: AsyncConnection, rid: uuid.UUID, body: ConsentCreate, by: str) -> None:
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


async def consent(conn: AsyncConnection, rid: uuid.UUID, cid: uuid.UUID) -> tuple | None:
    """(withdrawn_at,) of the resident's consent, or None when it has no such consent."""
    cur = await conn.execute(
        "SELECT withdrawn_at FROM consents WHERE id = %s AND resident_id = %s", (cid, rid)
    )
    return await cur.fetchone()


async def withdraw_consent(
    conn: AsyncConnection, cid: uuid.UUID, by: str, reason: str | None
) -> None:
    await conn.execute(
        """UPDATE consents SET withdrawn_at = now(), withdrawn_by = %s, withdrawal_reason = %s
           WHERE id = %s""",
        (by, reason, cid),
    )


async def set_schedule(
    conn: AsyncConnection, rid: uuid.UUID, monitor_from: time, monitor_to: time, times: dict
) -> None:
    """The nightly window and the tillsyn times {time: mode}, kept as local wall times."""
    await conn.execute(
        "UPDATE residents SET monitor_from = %s, monitor_to = %s WHERE id = %s",
        (monitor_from.replace(tzinfo=None), monitor_to.replace(tzinfo=None), rid),
    )
    await conn.execute("DELETE FROM tillsyn_times WHERE resident_id = %s", (rid,))
    for at, mode in sorted(times.items()):
        await conn.execute(
            "INSERT INTO tillsyn_times (resident_id, at_time, mode) VALUES (%s, %s, %s)",
            (rid, at.replace(tzinfo=None), mode),
        )


async def window(conn: AsyncConnection, rid: uuid.UUID) -> tuple[str, time, time, datetime]:
    """(unit time zone, monitor_from, monitor_to, the transaction's now())."""
    cur = await conn.execute(
        """SELECT s.timezone, r.monitor_from, r.monitor_to, now() FROM residents r
           JOIN sites s ON s.id = r.site_id WHERE r.id = %s""",
        (rid,),
    )
    return await cur.fetchone()


async def add_pause(
    conn: AsyncConnection,
    rid: uuid.UUID,
    starts: datetime,
    ends: datetime,
    reason: str | None,
    by: str,
) -> None:
    await conn.execute(
        """INSERT INTO monitoring_pauses (resident_id, starts_at, ends_at, reason, created_by)
           VALUES (%s, %s, %s, %s, %s)""",
        (rid, starts, ends, reason, by),
    )


async def pause(
    conn: AsyncConnection, rid: uuid.UUID, pid: uuid.UUID
) -> tuple[datetime, datetime, datetime] | None:
    """(starts_at, ends_at, the transaction's now()) of the resident's pause, else None."""
    cur = await conn.execute(
        """SELECT starts_at, ends_at, now() FROM monitoring_pauses
           WHERE id = %s AND resident_id = %s""",
        (pid, rid),
    )
    return await cur.fetchone()


async def end_pause(conn: AsyncConnection, pid: uuid.UUID, end: datetime) -> None:
    await conn.execute("UPDATE monitoring_pauses SET ends_at = %s WHERE id = %s", (end, pid))


async def set_alerting(conn: AsyncConnection, rid: uuid.UUID, profile: AlertingProfile) -> None:
    await conn.execute(
        "UPDATE residents SET risk_preset = %s, rule_overrides = %s WHERE id = %s",
        (profile.risk_preset, Jsonb(profile.rule_overrides), rid),
    )
