"""The centre's side of the care-home gateways.

- **Site watch** (pure): each gateway's heartbeat (`GatewayStatus`) as it arrives. A site
  whose gateway has gone quiet is **offline** ("enhet offline", raised to the on-call role);
  while it is offline or says it alerts on site (fallback, handback) the centre leaves its
  rooms to the gateway (no room alerts, no repeats: one call for one situation).
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
from datetime import datetime, timedelta

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from nattillsyn.protocol import AlertPriority, GatewayMode, GatewayStatus, GatewaySync
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
from nattillsyn.protocol.topics import SITE_ROOM

SITE_OFFLINE = "site_offline"
GATEWAY_STORAGE = "gateway_storage"
SITE_TITLES = {
    SITE_OFFLINE: "Enhet offline – {site}: centralen når inte enheten. Ring personalen; "
    "gatewayn larmar på plats om den är igång",
    GATEWAY_STORAGE: "Gatewayns lagring nästan full – {site}: data kan gå förlorad",
}
SITE_PRIORITY = {SITE_OFFLINE: AlertPriority.high, GATEWAY_STORAGE: AlertPriority.medium}


def site_title(kind: str, site_name: str) -> str:
    return SITE_TITLES.get(kind, kind + " – {site}").format(site=site_name)


# -- site watch (pure) ----------------------------------------------------------------------


@dataclass
class SiteGateway:
    gateway: str
    last_seen: datetime  # arrival of its last status here (liveness clock)
    status: GatewayStatus
    offline_since: datetime | None = None  # arrival of its last will


@dataclass(frozen=True)
class SiteCondition:
    site: str
    kind: str
    since: datetime
    episode: str


@dataclass
class SiteWatch:
    offline_after_s: float
    sites: dict[str, SiteGateway] = field(default_factory=dict)

    def apply(self, msg: GatewayStatus, now: datetime) -> bool:
        """Fold one status in; True when the site was not known before (a new gateway)."""
        known = self.sites.get(msg.site)
        if msg.state == "offline":
            # A last will (seq 0) or a clean stop of the session we know (or a newer one).
            if known is None or msg.session < known.status.session:
                return False  # nothing known, or a stale will of an older session
            known.offline_since = known.offline_since or now
            return False
        if known is not None and (msg.session, msg.seq) < (
            known.status.session,
            known.status.seq,
        ):
            return False  # an older status (replayed or reordered)
        new = known is None
        self.sites[msg.site] = SiteGateway(msg.gateway, now, msg)
        return new

    def offline(self, site: str, now: datetime) -> bool:
        g = self.sites.get(site)
        if g is None:
            return False  # no gateway: rooms talk to the centre directly
        if g.offline_since is not None:
            return True
        return (now - g.last_seen).total_seconds() >= self.offline_after_s

    def suppressed(self, site: str, now: datetime) -> bool:
        """The site's rooms are the gateway's: it is out of reach or says it alerts."""
        g = self.sites.get(site)
        if g is None:
            return False
        return self.offline(site, now) or g.status.mode is not GatewayMode.normal

    def conditions(self, now: datetime) -> list[SiteCondition]:
        out = []
        for site, g in self.sites.items():
            if self.offline(site, now):
                since = g.offline_since or g.last_seen
                # The episode is the last status heard: the same on every process.
                out.append(
                    SiteCondition(
                        site,
                        SITE_OFFLINE,
                        since,
                        f"site_offline:{g.gateway}:{g.status.session}:{g.status.seq}",
                    )
                )
            if g.status.spool_warn_since is not None:
                out.append(
                    SiteCondition(
                        site,
                        GATEWAY_STORAGE,
                        g.status.spool_warn_since,
                        f"storage:{g.gateway}:{g.status.spool_warn_since.isoformat()}",
                    )
                )
        return out

    def next_change(self, now: datetime) -> datetime | None:
        times = [
            g.last_seen + timedelta(seconds=self.offline_after_s)
            for g in self.sites.values()
            if g.offline_since is None
        ]
        return min(times) if times else None


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

_RANK = "(CASE {} WHEN 'firing' THEN 0 WHEN 'acknowledged' THEN 1 ELSE 2 END)"


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
    ids: dict[uuid.UUID, uuid.UUID] = {}
    async with conn.transaction():
        for sa in msg.alerts:
            a = sa.alert
            if a.site != msg.site:
                raise ValueError(f"alert {a.alert_id} is of site {a.site}, not {msg.site}")
            cur = await conn.execute(
                """SELECT id FROM alerts WHERE id = %s
                   OR (%s::uuid IS NOT NULL AND kind = %s AND source_event = %s)
                   ORDER BY (id = %s) DESC LIMIT 1""",
                (a.alert_id, a.source_event, a.kind, a.source_event, a.alert_id),
            )
            row = await cur.fetchone()
            if row is None:
                await conn.execute(
                    """INSERT INTO alerts (id, site, room, device, kind, priority, status, title,
                           started_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by,
                           outcome, source_event, practice, resident_id, episode, occurrences,
                           last_seen_at, escalation_step, targets, last_notified_at, silenced,
                           origin)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                               %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    (
                        a.alert_id, a.site, a.room, a.device, a.kind, str(a.priority),
                        str(a.status), a.title, a.started, a.acknowledged_at,
                        a.acknowledged_by, a.resolved_at, a.resolved_by, a.outcome,
                        a.source_event, a.practice, sa.resident_id, sa.episode, a.occurrences,
                        a.started, a.escalation_step, a.targets, sa.last_notified_at,
                        a.silenced, origin,
                    ),
                )  # fmt: skip
                out.add("alerts", 1)
                cid = a.alert_id
            else:
                cid = row[0]
                await conn.execute(
                    f"""UPDATE alerts c SET
                           status = CASE WHEN {_RANK.format("%s::text")} > {_RANK.format("c.status")}
                                         THEN %s ELSE c.status END,
                           acknowledged_by = CASE WHEN c.acknowledged_at IS NULL THEN %s
                                                  ELSE c.acknowledged_by END,
                           acknowledged_at = coalesce(c.acknowledged_at, %s),
                           resolved_by = CASE WHEN c.resolved_at IS NULL THEN %s
                                              ELSE c.resolved_by END,
                           resolved_at = coalesce(c.resolved_at, %s),
                           outcome = coalesce(c.outcome, %s),
                           occurrences = greatest(c.occurrences, %s),
                           escalation_step = greatest(c.escalation_step, %s),
                           targets = ARRAY(SELECT DISTINCT unnest(c.targets || %s::text[])),
                           last_notified_at = greatest(c.last_notified_at, %s),
                           silenced = c.silenced OR %s,
                           origin = %s, updated_at = now()
                       WHERE c.id = %s""",
                    (
                        str(a.status), str(a.status), a.acknowledged_by, a.acknowledged_at,
                        a.resolved_by, a.resolved_at, a.outcome, a.occurrences,
                        a.escalation_step, a.targets, sa.last_notified_at, a.silenced, origin,
                        cid,
                    ),
                )  # fmt: skip
                out.add("alerts_merged", 1)
            ids[a.alert_id] = cid
            out.alerts.append(cid)
        for h in msg.history:
            cid = ids.get(h.alert_id)
            if cid is None:
                cur = await conn.execute("SELECT id FROM alerts WHERE id = %s", (h.alert_id,))
                found = await cur.fetchone()
                if found is None:
                    continue  # its alert was never uploaded: nothing to attach it to
                cid = found[0]
            cur = await conn.execute(
                """INSERT INTO alert_history (alert_id, ts, status, by_user, note, origin,
                       origin_seq)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (origin, origin_seq) WHERE origin IS NOT NULL DO NOTHING""",
                (cid, h.ts, h.status, h.by_user, h.note, origin, h.seq),
            )
            out.add("alert_history", cur.rowcount)
        rounds: dict[uuid.UUID, uuid.UUID] = {}
        for r in msg.rounds:
            cur = await conn.execute(
                """INSERT INTO rounds (id, site, room, resident_id, scheduled_at, mode,
                       produced_at, observed_state, observed_since, confidence, summary,
                       decision, reason, confirmed_by, confirmed_at, late, practice)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT DO NOTHING RETURNING id""",
                (
                    r.id, msg.site, r.room, r.resident_id, r.scheduled_at, r.mode, r.produced_at,
                    r.observed_state, r.observed_since, r.confidence, r.summary, r.decision,
                    r.reason, r.confirmed_by, r.confirmed_at, r.late, r.practice,
                ),
            )  # fmt: skip
            if await cur.fetchone() is not None:
                out.add("rounds", 1)
                rounds[r.id] = r.id
                continue
            # The slot exists: the gateway saw the room while the centre (cut off) did not,
            # so its entry wins unless staff already confirmed the central one.
            cur = await conn.execute(
                """UPDATE rounds SET observed_state = %s, observed_since = %s, confidence = %s,
                       summary = %s, decision = %s, reason = %s,
                       confirmed_by = coalesce(confirmed_by, %s),
                       confirmed_at = coalesce(confirmed_at, %s)
                   WHERE (id = %s OR (resident_id = %s AND scheduled_at = %s AND practice = %s))
                     AND (confirmed_at IS NULL OR id = %s)
                   RETURNING id""",
                (
                    r.observed_state, r.observed_since, r.confidence, r.summary, r.decision,
                    r.reason, r.confirmed_by, r.confirmed_at, r.id, r.resident_id,
                    r.scheduled_at, r.practice, r.id,
                ),
            )  # fmt: skip
            row = await cur.fetchone()
            if row is None:
                cur = await conn.execute(
                    """SELECT id FROM rounds WHERE resident_id = %s AND scheduled_at = %s
                       AND practice = %s""",
                    (r.resident_id, r.scheduled_at, r.practice),
                )
                row = await cur.fetchone()
            if row is not None:
                rounds[r.id] = row[0]
        for v in msg.visits:
            round_id = await _known(conn, "rounds", rounds.get(v.round_id, v.round_id))
            alert_id = await _known(conn, "alerts", ids.get(v.alert_id, v.alert_id))
            cur = await conn.execute(
                """INSERT INTO visits (id, site, room, resident_id, started_at, ended_at, by_user,
                       reason, round_id, alert_id, practice)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (id) DO UPDATE SET
                       ended_at = coalesce(visits.ended_at, EXCLUDED.ended_at)
                   RETURNING (xmax = 0)""",
                (
                    v.id, msg.site, v.room, v.resident_id, v.started_at, v.ended_at, v.by_user,
                    v.reason, round_id, alert_id, v.practice,
                ),
            )  # fmt: skip
            row = await cur.fetchone()
            out.add("visits", 1 if row and row[0] else 0)
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


async def _known(conn: AsyncConnection, table: str, rid: uuid.UUID | None) -> uuid.UUID | None:
    if rid is None:
        return None
    cur = await conn.execute(f"SELECT 1 FROM {table} WHERE id = %s", (rid,))
    return rid if await cur.fetchone() else None


async def site_name(conn: AsyncConnection, site: str) -> str:
    cur = await conn.execute("SELECT name FROM sites WHERE id = %s", (site,))
    row = await cur.fetchone()
    return row[0] if row else site


__all__ = [
    "GATEWAY_STORAGE",
    "SITE_OFFLINE",
    "SITE_PRIORITY",
    "SITE_ROOM",
    "ImportResult",
    "SiteCondition",
    "SiteGateway",
    "SiteWatch",
    "build_snapshot",
    "import_sync",
    "site_name",
    "site_title",
]
