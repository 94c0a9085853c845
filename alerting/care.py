"""What alerting reads of the care model: rooms, residents' rules and whether each room is
monitored now (the SQL function `monitoring_active`, the one rule), silences, open visits."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection

from . import presets
from .presets import Rule, RuleKind

CARE_CHANNEL = "nattillsyn_care"  # NOTIFY on it (payload `<schema>.<table>`): reload the model


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo("Europe/Stockholm")


@dataclass(frozen=True)
class RoomCare:
    site: str
    room: str
    name: str
    tz: ZoneInfo
    resident_id: uuid.UUID | None
    monitored: bool
    rules: dict[RuleKind, Rule]


async def load_rooms(conn: AsyncConnection) -> dict[tuple[str, str], RoomCare]:
    cur = await conn.execute(
        """SELECT ro.site_id, ro.id, ro.name, s.timezone, r.id, r.risk_preset, r.rule_overrides,
                  monitoring_active(ro.site_id, ro.id, now())
           FROM rooms ro JOIN sites s ON s.id = ro.site_id
           LEFT JOIN residents r ON r.site_id = ro.site_id AND r.room_id = ro.id AND r.active"""
    )
    out: dict[tuple[str, str], RoomCare] = {}
    for site, room, name, tz, rid, preset, overrides, active in await cur.fetchall():
        try:
            rules = presets.effective_rules(preset or presets.DEFAULT_PRESET, overrides or {})
        except ValueError:
            # Invalid overrides must not silence a resident: fall back to the preset alone.
            rules = presets.effective_rules(preset or presets.DEFAULT_PRESET)
        out[(site, room)] = RoomCare(site, room, name, zone(tz), rid, bool(active), rules)
    return out


@dataclass(frozen=True)
class Silence:
    id: uuid.UUID
    site: str
    room: str | None
    kinds: tuple[str, ...]
    starts_at: datetime
    ends_at: datetime

    def matches(self, site: str, room: str, kind: str, at: datetime) -> bool:
        return (
            self.site == site
            and (self.room is None or self.room == room)
            and (not self.kinds or kind in self.kinds)
            and self.starts_at <= at < self.ends_at
        )


def silenced(silences: list[Silence], site: str, room: str, kind: str, at: datetime) -> bool:
    return any(s.matches(site, room, kind, at) for s in silences)


async def load_silences(conn: AsyncConnection) -> list[Silence]:
    cur = await conn.execute(
        """SELECT id, site, room, kinds, starts_at, ends_at FROM alert_silences
           WHERE ends_at > now() AND ended_by IS NULL"""
    )
    return [Silence(r[0], r[1], r[2], tuple(r[3] or ()), r[4], r[5]) for r in await cur.fetchall()]


# A visit still without an end this long after it started was not ended on the tablet
# (forgotten): it no longer counts as staff in the room, so re-sounding resumes.
VISIT_FORGOTTEN_AFTER = timedelta(hours=2)


async def load_open_visits(conn: AsyncConnection) -> set[tuple[str, str]]:
    cur = await conn.execute(
        """SELECT DISTINCT site, room FROM visits
           WHERE ended_at IS NULL AND started_at > now() - %s""",
        (VISIT_FORGOTTEN_AFTER,),
    )
    return {(r[0], r[1]) for r in await cur.fetchall()}


async def load_heartbeats(conn: AsyncConnection) -> dict[tuple[str, str], tuple[str, datetime]]:
    """Last heartbeat per room from the store (so a restart does not forget a silent device)."""
    cur = await conn.execute(
        """SELECT DISTINCT ON (site_id, room_id) site_id, room_id, id, last_heartbeat
           FROM devices WHERE room_id IS NOT NULL AND last_heartbeat IS NOT NULL
           ORDER BY site_id, room_id, last_heartbeat DESC"""
    )
    return {(r[0], r[1]): (r[2], r[3]) for r in await cur.fetchall()}


@dataclass
class CareModel:
    """The care model as alerting last read it (reloaded on every change and periodically)."""

    rooms: dict[tuple[str, str], RoomCare] = field(default_factory=dict)
    silences: list[Silence] = field(default_factory=list)
    visits: set[tuple[str, str]] = field(default_factory=set)
    # When monitoring of each room began (delays count from it); None: before start-up.
    monitored_since: dict[tuple[str, str], datetime | None] = field(default_factory=dict)

    async def reload(
        self, conn: AsyncConnection, now: datetime, initial: bool = False
    ) -> list[tuple[str, str]]:
        """Read it again; returns the rooms whose rules or monitoring changed."""
        rooms = await load_rooms(conn)
        silences = await load_silences(conn)
        visits = await load_open_visits(conn)
        changed = []
        for key, rc in rooms.items():
            before = self.rooms.get(key)
            if rc.monitored and (before is None or not before.monitored):
                # Delays count from when monitoring began; at start-up: unknown, long ago.
                self.monitored_since[key] = None if initial else now
            if before != rc:
                changed.append(key)
        self.rooms, self.silences, self.visits = rooms, silences, visits
        return changed
