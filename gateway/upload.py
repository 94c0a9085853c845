"""What the gateway uploads to the centre: what happened on site while it alerted.

- **alerts** changed since the last contact with the centre (their full current state) and
  their history rows from then on;
- **rounds** produced or confirmed on site since the gateway took over;
- **visits** started or ended on site since the last upload, and the **access log** rows
  written on site (loggkontroll stays complete), in every mode.

Rows are read from the gateway's local database and sent in batches (`GatewaySync`), each
answered by the centre (`GatewaySyncAck`) after it merged them in one transaction.
Watermarks advance only after the answer; a batch sent twice changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from nattillsyn.alerting import alerts_db
from nattillsyn.protocol import GatewaySync
from nattillsyn.protocol.gateway import (
    SyncAlert,
    SyncAudit,
    SyncHistory,
    SyncRound,
    SyncVisit,
)


async def history_seq(conn: AsyncConnection) -> int:
    cur = await conn.execute("SELECT coalesce(max(seq), 0) FROM alert_history")
    return (await cur.fetchone())[0]


async def audit_seq(conn: AsyncConnection) -> int:
    cur = await conn.execute("SELECT coalesce(max(id), 0) FROM audit_log")
    return (await cur.fetchone())[0]


async def collect(
    conn: AsyncConnection,
    *,
    alerts_after: int | None,
    rounds_since: datetime | None,
    visits_since: datetime | None,
    audit_after: int,
    extra_alerts: set[uuid.UUID] = frozenset(),  # type: ignore[assignment]
) -> dict[str, list]:
    """Rows to upload. `alerts_after` None: no alerts (the centre was in charge)."""
    out: dict[str, list] = {"alerts": [], "history": [], "rounds": [], "visits": [], "audit": []}
    async with conn.cursor(row_factory=dict_row) as cur:
        if alerts_after is not None:
            await cur.execute(
                """SELECT alert_id, seq, ts, status, by_user, note FROM alert_history
                   WHERE seq > %s ORDER BY seq""",
                (alerts_after,),
            )
            hist = await cur.fetchall()
            ids = list(dict.fromkeys([h["alert_id"] for h in hist] + sorted(extra_alerts)))
            for aid in ids:
                stored = await alerts_db.get_stored(conn, aid)
                if stored is None:
                    continue
                out["alerts"].append(
                    SyncAlert(
                        alert=stored.alert.model_copy(update={"rev": None}),
                        episode=stored.episode,
                        resident_id=stored.resident_id,
                        last_notified_at=stored.last_notified_at,
                    )
                )
            out["history"] = [
                SyncHistory(**{**h, "note": (h["note"] or None) and h["note"][:500]}) for h in hist
            ]
        if rounds_since is not None:
            await cur.execute(
                """SELECT id, room, resident_id, scheduled_at, mode, produced_at, observed_state,
                          observed_since, confidence, summary, decision, reason, confirmed_by,
                          confirmed_at, late, practice
                   FROM rounds WHERE produced_at >= %s OR confirmed_at >= %s
                   ORDER BY produced_at""",
                (rounds_since, rounds_since),
            )
            out["rounds"] = [SyncRound(**r) for r in await cur.fetchall()]
        if visits_since is not None:
            await cur.execute(
                """SELECT id, room, resident_id, started_at, ended_at, by_user, reason, round_id,
                          alert_id, practice
                   FROM visits WHERE started_at >= %s OR ended_at >= %s ORDER BY started_at""",
                (visits_since, visits_since),
            )
            out["visits"] = [SyncVisit(**v) for v in await cur.fetchall()]
        await cur.execute(
            """SELECT id AS seq, at, user_id, username, role, action, purpose, what, room, detail
               FROM audit_log WHERE id > %s ORDER BY id LIMIT 5000""",
            (audit_after,),
        )
        out["audit"] = [
            SyncAudit(**{**a, "detail": a["detail"] if isinstance(a["detail"], dict) else None})
            for a in await cur.fetchall()
        ]
    return out


def batches(site: str, gateway: str, rows: dict[str, list], size: int) -> list[GatewaySync]:
    """Split into messages of at most `size` rows, alerts before their history, then rounds
    before the visits that may point at them."""
    out: list[GatewaySync] = []
    current: dict[str, list] = {}
    n = 0
    for key in ("alerts", "history", "rounds", "visits", "audit"):
        for row in rows.get(key, []):
            current.setdefault(key, []).append(row)
            n += 1
            if n >= size:
                out.append(
                    GatewaySync(site=site, gateway=gateway, correlation_id=uuid.uuid4(), **current)
                )
                current, n = {}, 0
    if current:
        out.append(GatewaySync(site=site, gateway=gateway, correlation_id=uuid.uuid4(), **current))
    return out


__all__ = ["audit_seq", "batches", "collect", "history_seq"]
