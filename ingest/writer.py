"""Writes one batch in one transaction: COPY into staging, then insert-if-new.

Idempotent on the source message id, so broker redeliveries and edge replays
never duplicate a row. Rows are ordered per device by source time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from nattillsyn.protocol import Availability, ConfigState, Event, Heartbeat, RoomState
from nattillsyn.protocol.validate import DeadLetter, Record

# table -> (columns, row builder); `payload` is the whole message as JSON.
EVENT_COLS = (
    "ts",
    "id",
    "site",
    "room",
    "device",
    "session",
    "seq",
    "event_id",
    "type",
    "phase",
    "score",
    "zone",
    "payload",
)
STATE_COLS = (
    "ts",
    "id",
    "site",
    "room",
    "device",
    "session",
    "seq",
    "state",
    "since",
    "confidence",
    "payload",
)
HEARTBEAT_COLS = ("ts", "id", "site", "room", "device", "session", "seq", "payload")


def _event_row(m: Event) -> tuple:
    return (
        m.ts,
        m.id,
        m.site,
        m.room,
        m.device,
        m.session,
        m.seq,
        m.event_id,
        m.type.value,
        m.phase.value,
        m.score,
        m.zone,
        Jsonb(m.model_dump(mode="json", exclude_none=True)),
    )


def _state_row(m: RoomState) -> tuple:
    return (
        m.ts,
        m.id,
        m.site,
        m.room,
        m.device,
        m.session,
        m.seq,
        m.state.value,
        m.since,
        m.confidence,
        Jsonb(m.model_dump(mode="json", exclude_none=True)),
    )


def _heartbeat_row(m: Heartbeat) -> tuple:
    return (
        m.ts,
        m.id,
        m.site,
        m.room,
        m.device,
        m.session,
        m.seq,
        Jsonb(m.model_dump(mode="json", exclude_none=True)),
    )


@dataclass
class DeviceSeen:
    """What one batch tells about one device; merged into `devices`."""

    site: str
    device: str
    room: str
    last_seen: datetime
    session: int
    last_seq: int
    last_heartbeat: datetime | None = None
    agent_version: str | None = None
    config_version: int | None = None
    availability: str | None = None

    def merge(self, rec: Record) -> None:
        m = rec.msg
        if (m.session, m.seq) > (self.session, self.last_seq):
            self.session, self.last_seq, self.room = m.session, m.seq, m.room
        self.last_seen = max(self.last_seen, m.ts)
        if isinstance(m, Heartbeat) and (
            self.last_heartbeat is None or m.ts >= self.last_heartbeat
        ):
            self.last_heartbeat, self.agent_version = m.ts, m.agent_version
            self.config_version = m.config_version
        if isinstance(m, Availability):
            # Arrival order, not source time: a last will carries the time it was registered.
            self.availability = m.state
        if isinstance(m, ConfigState) and m.error is None:
            self.config_version = m.version


@dataclass
class BatchResult:
    inserted: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    dead_letters: int = 0


async def _copy_insert(
    conn: AsyncConnection, table: str, cols: Sequence[str], rows: list[tuple]
) -> int:
    if not rows:
        return 0
    stage = f"stage_{table}"
    col_list = ", ".join(cols)
    await conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    async with conn.cursor() as cur:
        async with cur.copy(f"COPY {stage} ({col_list}) FROM STDIN") as copy:
            for row in rows:
                await copy.write_row(row)
        await cur.execute(
            f"INSERT INTO {table} ({col_list}) SELECT {col_list} FROM {stage} ORDER BY device, ts "
            "ON CONFLICT DO NOTHING"
        )
        return cur.rowcount


async def write_batch(
    conn: AsyncConnection, records: list[Record], dead: list[DeadLetter]
) -> BatchResult:
    """Write a batch inside one transaction (the caller acknowledges after it returns)."""
    events: list[tuple] = []
    states: list[tuple] = []
    beats: list[tuple] = []
    seen: dict[tuple[str, str], DeviceSeen] = {}
    for rec in records:
        m = rec.msg
        if isinstance(m, Event):
            events.append(_event_row(m))
        elif isinstance(m, RoomState):
            states.append(_state_row(m))
        elif isinstance(m, Heartbeat):
            beats.append(_heartbeat_row(m))
        if rec.topic.device is not None:
            key = (m.site, m.device)  # type: ignore[attr-defined]
            if key not in seen:
                seen[key] = DeviceSeen(m.site, m.device, m.room, m.ts, m.session, m.seq)  # type: ignore[attr-defined]
            seen[key].merge(rec)

    result = BatchResult()
    async with conn.transaction():
        for table, cols, rows in (
            ("events", EVENT_COLS, events),
            ("room_states", STATE_COLS, states),
            ("heartbeats", HEARTBEAT_COLS, beats),
        ):
            n = await _copy_insert(conn, table, cols, rows)
            result.inserted[table] = n
            result.duplicates += len(rows) - n
        for d in seen.values():
            await conn.execute(
                """
                INSERT INTO devices AS d (site_id, id, room_id, session, last_seq, last_seen, last_heartbeat,
                                          agent_version, config_version, availability)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, coalesce(%s, 0), coalesce(%s, 'unknown'))
                ON CONFLICT (site_id, id) DO UPDATE SET
                    room_id = CASE WHEN (EXCLUDED.session, EXCLUDED.last_seq) >= (coalesce(d.session, -1),
                                         coalesce(d.last_seq, -1)) THEN EXCLUDED.room_id ELSE d.room_id END,
                    session = greatest(d.session, EXCLUDED.session),
                    last_seq = CASE WHEN EXCLUDED.session > coalesce(d.session, -1) THEN EXCLUDED.last_seq
                                    WHEN EXCLUDED.session = d.session THEN greatest(d.last_seq, EXCLUDED.last_seq)
                                    ELSE d.last_seq END,
                    last_seen = greatest(d.last_seen, EXCLUDED.last_seen),
                    last_heartbeat = greatest(d.last_heartbeat, EXCLUDED.last_heartbeat),
                    agent_version = coalesce(%s, d.agent_version),
                    config_version = coalesce(%s, d.config_version),
                    availability = coalesce(%s, d.availability)
                """,
                (
                    d.site,
                    d.device,
                    d.room,
                    d.session,
                    d.last_seq,
                    d.last_seen,
                    d.last_heartbeat,
                    d.agent_version,
                    d.config_version,
                    d.availability,
                    d.agent_version,
                    d.config_version,
                    d.availability,
                ),
            )
        if dead:
            async with (
                conn.cursor() as cur,
                cur.copy("COPY dead_letters (topic, reason, size, payload) FROM STDIN") as copy,
            ):
                for dl in dead:
                    await copy.write_row(
                        (dl.topic, dl.reason[:1000], len(dl.payload), dl.kept_payload)
                    )
            result.dead_letters = len(dead)
    return result
