"""What the centre exchanges with the care-home gateways through the database.

(Which gateways are alive and which sites they hold: `site_watch`.)

- **Snapshot**: what a gateway needs to alert for its site alone (`SiteSnapshot`), built from
  the care model and published retained whenever it changes.
- **Import**: what a gateway uploads after alerting on site (alerts and their history,
  rounds, visits, the access log), merged idempotently: alert ids are the same on both
  sides (`rules.alert_id`), history and access-log rows carry the gateway's own numbers.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from nattillsyn.protocol import GatewaySync
from nattillsyn.protocol.gateway import (
    PauseRow,
    ResidentRow,
    RoomRow,
    SilenceRow,
    SiteRow,
    SiteSnapshot,
    StaffRow,
    TabletRow,
    TillsynTimeRow,
)

from . import alerts_db, rounds_db

# -- snapshot (centre) -----------------------------------------------------------------------


async def _rows(conn: AsyncConnection, query: str, args: tuple) -> list[dict]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, args)
        return await cur.fetchall()


async def build_snapshot(conn: AsyncConnection, site: str) -> SiteSnapshot | None:
    """The site's configuration as its gateway needs it; None for an unknown site."""
    rows = await _rows(conn, "SELECT id, name, timezone FROM sites WHERE id = %s", (site,))
    if not rows:
        return None
    rooms = await _rows(
        conn, "SELECT id, name FROM rooms WHERE site_id = %s AND active ORDER BY id", (site,)
    )
    residents = await _rows(
        conn,
        """SELECT id, room_id, display_name, pseudonym, monitoring_active, active, monitor_from,
                  monitor_to, risk_preset, rule_overrides
           FROM residents WHERE site_id = %s AND active ORDER BY id""",
        (site,),
    )
    times = await _rows(
        conn,
        """SELECT t.resident_id, t.at_time, t.mode FROM tillsyn_times t
           JOIN residents r ON r.id = t.resident_id
           WHERE r.site_id = %s AND r.active ORDER BY t.resident_id, t.at_time""",
        (site,),
    )
    pauses = await _rows(
        conn,
        """SELECT p.id, p.resident_id, p.starts_at, p.ends_at, p.reason FROM monitoring_pauses p
           JOIN residents r ON r.id = p.resident_id
           WHERE r.site_id = %s AND r.active AND p.ends_at > now() ORDER BY p.id""",
        (site,),
    )
    silences = await _rows(
        conn,
        """SELECT id, room, kinds, starts_at, ends_at, reason, created_by, practice
           FROM alert_silences WHERE site = %s AND ends_at > now() AND ended_by IS NULL
           ORDER BY id""",
        (site,),
    )
    staff = await _rows(
        conn,
        """SELECT u.id, u.username, u.display_name, u.role, u.password_hash, p.pin_hash
           FROM users u JOIN user_sites us ON us.user_id = u.id AND us.site_id = %s
           LEFT JOIN staff_pins p ON p.user_id = u.id
           WHERE u.active AND u.role IN ('night_staff', 'unit_manager') ORDER BY u.id""",
        (site,),
    )
    tablets = await _rows(
        conn,
        """SELECT id, name, token_hash, groups FROM tablets
           WHERE site_id = %s AND revoked_at IS NULL ORDER BY id""",
        (site,),
    )
    content = {
        "site": SiteRow(**rows[0]),
        "rooms": [RoomRow(**r) for r in rooms],
        "residents": [
            ResidentRow(**{**r, "rule_overrides": r["rule_overrides"] or {}}) for r in residents
        ],
        "tillsyn_times": [TillsynTimeRow(**r) for r in times],
        "pauses": [PauseRow(**r) for r in pauses],
        "silences": [SilenceRow(**{**r, "kinds": list(r["kinds"] or [])}) for r in silences],
        "staff": [StaffRow(**r) for r in staff],
        "tablets": [TabletRow(**{**r, "groups": list(r["groups"] or [])}) for r in tablets],
    }
    dumped = {
        k: (
            v.model_dump(mode="json")
            if not isinstance(v, list)
            else [x.model_dump(mode="json") for x in v]
        )
        for k, v in content.items()
    }
    digest = hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()
    return SiteSnapshot(digest=digest, **content)


# -- import of an upload (centre) ------------------------------------------------------------


@dataclass
class ImportResult:
    stored: dict[str, int] = field(default_factory=dict)
    alerts: list[uuid.UUID] = field(default_factory=list)  # central ids of the alerts touched

    def add(self, table: str, n: int) -> None:
        self.stored[table] = self.stored.get(table, 0) + n


async def import_sync(conn: AsyncConnection, msg: GatewaySync) -> ImportResult:
    """Merge one upload in one transaction. An alert the centre already has (same id, or the
    same source event and kind) keeps the furthest status and gains what the gateway saw
    (who acknowledged, resolved, with which outcome); everything else is inserted once."""
    origin = f"{msg.site}/{msg.gateway}"
    out = ImportResult()
    central: dict[uuid.UUID, uuid.UUID] = {}  # the gateway's id of an alert/round → ours
    async with conn.transaction():
        for sa in msg.alerts:
            if sa.alert.site != msg.site:
                raise ValueError(
                    f"alert {sa.alert.alert_id} is of site {sa.alert.site}, not {msg.site}"
                )
            cid, inserted = await alerts_db.merge_uploaded(conn, sa, origin)
            out.add("alerts" if inserted else "alerts_merged", 1)
            central[sa.alert.alert_id] = cid
            out.alerts.append(cid)
        for h in msg.history:
            cid = central.get(h.alert_id) or await alerts_db.known(conn, h.alert_id)
            if cid is None:
                continue  # its alert was never uploaded: nothing to attach it to
            out.add("alert_history", await alerts_db.merge_uploaded_history(conn, cid, h, origin))
        for r in msg.rounds:
            rid, inserted = await rounds_db.merge_uploaded_round(conn, msg.site, r)
            if inserted:
                out.add("rounds", 1)
            if rid is not None:
                central[r.id] = rid
        for v in msg.visits:
            inserted = await rounds_db.merge_uploaded_visit(conn, msg.site, v, central)
            out.add("visits", int(inserted))
        for au in msg.audit:
            cur = await conn.execute(
                """INSERT INTO audit_log (at, user_id, username, role, action, purpose, what,
                       site, room, detail, origin, origin_seq)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (origin, origin_seq) WHERE origin IS NOT NULL DO NOTHING""",
                (
                    au.at, au.user_id, au.username, au.role, au.action, au.purpose, au.what,
                    msg.site, au.room,
                    Jsonb({**(au.detail or {}), "gateway": msg.gateway}), origin, au.seq,
                ),
            )  # fmt: skip
            out.add("audit_log", cur.rowcount)
    return out


async def site_name(conn: AsyncConnection, site: str) -> str:
    cur = await conn.execute("SELECT name FROM sites WHERE id = %s", (site,))
    row = await cur.fetchone()
    return row[0] if row else site


__all__ = ["ImportResult", "build_snapshot", "import_sync", "site_name"]
