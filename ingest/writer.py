"""Writes one batch in one transaction: COPY into staging, then insert-if-new.

Idempotent on the source message id, so broker redeliveries and edge replays never
duplicate a row. Rows go in ordered per device by source time; the `devices` row of
each device is merged with guards on (session, seq), so the order in which batches
from several workers commit never lets an older message overwrite newer state. That
also lets the service merge device summaries in memory and write them less often
than once per message (`write_devices`).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from nattillsyn.protocol import Availability, ConfigState, Event, Heartbeat, RoomState
from nattillsyn.protocol.validate import DeadLetter, Record

# Every device message table starts with the envelope (`_envelope` below).
ENVELOPE_COLS = ("ts", "id", "site", "room", "device", "session", "seq")
EVENT_COLS = (*ENVELOPE_COLS, "event_id", "type", "phase", "score", "zone", "payload")
STATE_COLS = (*ENVELOPE_COLS, "state", "since", "confidence", "payload")
HEARTBEAT_COLS = (*ENVELOPE_COLS, "payload")
TABLES = (("events", EVENT_COLS), ("room_states", STATE_COLS), ("heartbeats", HEARTBEAT_COLS))
# Binary COPY: no text formatting here, no parsing of uuids and timestamps in the server.
_HEAD = ["timestamptz", "uuid", "text", "text", "text", "int8", "int8"]
COPY_TYPES = {
    "events": [*_HEAD, "uuid", "text", "text", "float4", "text", "jsonb"],
    "room_states": [*_HEAD, "text", "timestamptz", "float4", "jsonb"],
    "heartbeats": [*_HEAD, "jsonb"],
}


def _as_is(text: str) -> str:
    return text


def _json(raw: bytes) -> Jsonb:
    """The payload as sent (already validated JSON), without parsing it again."""
    return Jsonb(raw.decode(), dumps=_as_is)


def _envelope(m: Event | RoomState | Heartbeat) -> tuple:
    """The columns every device message table starts with."""
    return (m.ts, m.id, m.site, m.room, m.device, m.session, m.seq)


def _event_row(m: Event, payload: Jsonb) -> tuple:
    return (
        *_envelope(m),
        m.event_id,
        m.type.value,
        m.phase.value,
        m.score,
        m.zone,
        payload,
    )


def _state_row(m: RoomState, payload: Jsonb) -> tuple:
    return (*_envelope(m), m.state.value, m.since, m.confidence, payload)


def _heartbeat_row(m: Heartbeat, payload: Jsonb) -> tuple:
    return (*_envelope(m), payload)


@dataclass(slots=True)
class DeviceSeen:
    """What one batch tells about one device; merged into `devices`."""

    site: str
    device: str
    room: str
    last_seen: datetime
    session: int
    last_seq: int
    last_heartbeat: datetime | None = None
    health: str | None = None
    agent_version: str | None = None
    config_version: int | None = None
    config_version_set: bool = False  # a config_state reported an applied version
    availability: str | None = None
    availability_session: int | None = None
    availability_at: datetime | None = None

    def merge(self, rec: Record) -> None:
        m = rec.msg
        if (m.session, m.seq) > (self.session, self.last_seq):
            self.session, self.last_seq, self.room = m.session, m.seq, m.room
        if m.ts > self.last_seen:
            self.last_seen = m.ts
        if isinstance(m, Heartbeat):
            if self.last_heartbeat is None or m.ts >= self.last_heartbeat:
                self.last_heartbeat, self.agent_version = m.ts, m.agent_version
                self.config_version = m.config_version
                self.health = rec.raw.decode()
        elif isinstance(m, Availability):
            # Within a session, arrival order: the last will (seq 0) is published by the
            # broker after the device's later messages. A newer session always wins.
            if self.availability_session is None or m.session >= self.availability_session:
                self.availability = m.state
                self.availability_session = m.session
                self.availability_at = m.ts
        elif isinstance(m, ConfigState) and m.error is None:
            self.config_version = m.version
            self.config_version_set = True

    @property
    def urgent(self) -> bool:
        """Carries availability or an applied config: written with its batch."""
        return self.availability_session is not None or self.config_version_set

    def absorb(self, later: DeviceSeen) -> None:
        """Merge the summary of a later batch of the same device (same rules as the
        upsert, so writing the merged summary equals writing both in turn)."""
        if (later.session, later.last_seq) >= (self.session, self.last_seq):
            self.session, self.last_seq, self.room = later.session, later.last_seq, later.room
        if later.last_seen > self.last_seen:
            self.last_seen = later.last_seen
        if later.last_heartbeat is not None and (
            self.last_heartbeat is None or later.last_heartbeat >= self.last_heartbeat
        ):
            self.last_heartbeat, self.health = later.last_heartbeat, later.health
            self.agent_version = later.agent_version
        if later.config_version is not None:
            self.config_version = max(self.config_version or 0, later.config_version)
        self.config_version_set |= later.config_version_set
        if later.availability_session is not None and (
            self.availability_session is None
            or later.availability_session >= self.availability_session
        ):
            self.availability = later.availability
            self.availability_session = later.availability_session
            self.availability_at = later.availability_at

    def row(self) -> tuple:
        return (
            self.site,
            self.device,
            self.room,
            self.session,
            self.last_seq,
            self.last_seen,
            self.last_heartbeat,
            self.health,
            self.agent_version,
            self.config_version,
            self.availability,
            self.availability_session,
            self.availability_at,
        )


DEVICE_COLS = (
    "site_id",
    "id",
    "room_id",
    "session",
    "last_seq",
    "last_seen",
    "last_heartbeat",
    "health",
    "agent_version",
    "config_version",
    "availability",
    "availability_session",
    "availability_at",
)
STAGE_DEVICES = """
CREATE TEMP TABLE IF NOT EXISTS stage_devices (
    site_id text, id text, room_id text, session bigint, last_seq bigint, last_seen timestamptz,
    last_heartbeat timestamptz, health text, agent_version text, config_version int,
    availability text, availability_session bigint, availability_at timestamptz
) ON COMMIT DELETE ROWS
"""
UPSERT_DEVICES = """
INSERT INTO devices AS d (site_id, id, room_id, session, last_seq, last_seen, last_heartbeat,
                          health, agent_version, config_version, availability,
                          availability_session, availability_at)
SELECT site_id, id, room_id, session, last_seq, last_seen, last_heartbeat, health::jsonb,
       agent_version, coalesce(config_version, 0), coalesce(availability, 'unknown'),
       availability_session, availability_at
FROM stage_devices u
ORDER BY site_id, id  -- one lock order for every worker: no deadlocks between batches
ON CONFLICT (site_id, id) DO UPDATE SET
    room_id = CASE WHEN (EXCLUDED.session, EXCLUDED.last_seq)
                        >= (coalesce(d.session, -1), coalesce(d.last_seq, -1))
                   THEN EXCLUDED.room_id ELSE d.room_id END,
    last_seq = CASE WHEN EXCLUDED.session > coalesce(d.session, -1) THEN EXCLUDED.last_seq
                    WHEN EXCLUDED.session = d.session THEN greatest(d.last_seq, EXCLUDED.last_seq)
                    ELSE d.last_seq END,
    session = greatest(d.session, EXCLUDED.session),
    last_seen = greatest(d.last_seen, EXCLUDED.last_seen),
    health = CASE WHEN EXCLUDED.last_heartbeat >= coalesce(d.last_heartbeat, '-infinity')
                  THEN EXCLUDED.health ELSE d.health END,
    agent_version = CASE WHEN EXCLUDED.last_heartbeat >= coalesce(d.last_heartbeat, '-infinity')
                         THEN EXCLUDED.agent_version ELSE d.agent_version END,
    last_heartbeat = greatest(d.last_heartbeat, EXCLUDED.last_heartbeat),
    -- Config versions only grow.
    config_version = greatest(d.config_version, EXCLUDED.config_version),
    -- availability_session is set exactly when the batch carried an availability message.
    availability = CASE WHEN EXCLUDED.availability_session
                             >= coalesce(d.availability_session, -1)
                        THEN EXCLUDED.availability ELSE d.availability END,
    availability_at = CASE WHEN EXCLUDED.availability_session
                                >= coalesce(d.availability_session, -1)
                           THEN EXCLUDED.availability_at ELSE d.availability_at END,
    availability_session = greatest(d.availability_session, EXCLUDED.availability_session)
"""


@dataclass
class BatchResult:
    inserted: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    dead_letters: int = 0
    deferred: list[DeviceSeen] = field(default_factory=list)  # device summaries not yet written
    device_rows: int = 0  # device summaries merged with the batch


# Connections that already have their staging tables (temporary, per session).
_staged: weakref.WeakSet[AsyncConnection] = weakref.WeakSet()


async def _ensure_staging(conn: AsyncConnection) -> None:
    if conn in _staged:
        return
    for table, _cols in TABLES:
        await conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS stage_{table} (LIKE {table} INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS"
        )
    await conn.execute(STAGE_DEVICES)
    _staged.add(conn)


async def _copy_insert(
    conn: AsyncConnection, table: str, cols: Sequence[str], rows: list[tuple]
) -> int:
    if not rows:
        return 0
    stage = f"stage_{table}"
    col_list = ", ".join(cols)
    async with conn.cursor() as cur:
        async with cur.copy(f"COPY {stage} ({col_list}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(COPY_TYPES[table])
            for row in rows:
                await copy.write_row(row)
        await cur.execute(
            f"INSERT INTO {table} ({col_list}) SELECT {col_list} FROM {stage} "
            "ORDER BY device, ts ON CONFLICT DO NOTHING"
        )
        return cur.rowcount


def build_rows(
    records: list[Record],
) -> tuple[dict[str, list[tuple]], dict[tuple[str, str], DeviceSeen]]:
    """Rows per table and the per-device summary of a batch (pure)."""
    events: list[tuple] = []
    states: list[tuple] = []
    beats: list[tuple] = []
    seen: dict[tuple[str, str], DeviceSeen] = {}
    for rec in records:
        m = rec.msg
        if isinstance(m, Event):
            events.append(_event_row(m, _json(rec.raw)))
        elif isinstance(m, RoomState):
            states.append(_state_row(m, _json(rec.raw)))
        elif isinstance(m, Heartbeat):
            beats.append(_heartbeat_row(m, _json(rec.raw)))
        if rec.topic.device is not None:
            key = (m.site, m.device)  # type: ignore[attr-defined]
            d = seen.get(key)
            if d is None:
                d = seen[key] = DeviceSeen(m.site, m.device, m.room, m.ts, m.session, m.seq)  # type: ignore[attr-defined]
            d.merge(rec)
    return {"events": events, "room_states": states, "heartbeats": beats}, seen


async def write_devices(conn: AsyncConnection, devices: Iterable[DeviceSeen]) -> int:
    """Merge device summaries into `devices` (inside the caller's transaction)."""
    rows = [d.row() for d in sorted(devices, key=lambda d: (d.site, d.device))]
    if not rows:
        return 0
    await _ensure_staging(conn)
    async with conn.cursor() as cur:
        cols = ", ".join(DEVICE_COLS)
        async with cur.copy(f"COPY stage_devices ({cols}) FROM STDIN") as copy:
            for row in rows:
                await copy.write_row(row)
        await cur.execute(UPSERT_DEVICES)
    return len(rows)


async def write_batch(
    conn: AsyncConnection, records: list[Record], dead: list[DeadLetter], *, defer: bool = False
) -> BatchResult:
    """Write a batch inside one durable transaction (the caller acknowledges after it),
    with the batch's device summaries; with `defer` only the urgent ones, the others are
    returned in `deferred` for the caller to write later (`write_devices`)."""
    rows, seen = build_rows(records)
    now = [d for d in seen.values() if d.urgent or not defer]
    deferred = [d for d in seen.values() if defer and not d.urgent]
    result = BatchResult()
    await _ensure_staging(conn)
    async with conn.transaction():
        # Acknowledged means stored: the commit must be flushed, whatever the server default.
        await conn.execute("SET LOCAL synchronous_commit TO on")
        for table, cols in TABLES:
            batch = rows[table]
            n = await _copy_insert(conn, table, cols, batch)
            result.inserted[table] = n
            result.duplicates += len(batch) - n
        result.device_rows = await write_devices(conn, now)
        if dead:
            result.dead_letters = await _write_dead(conn, dead)
    result.deferred = deferred
    return result


DEAD_COLS = "topic, reason, size, payload, digest"
# A redelivery is stored unless the same message was dead-lettered within the window in
# which the broker can redeliver it (a crash, a broker restart: minutes, not days).
INSERT_DEAD_ONCE = f"""
INSERT INTO dead_letters ({DEAD_COLS})
SELECT %s, %s, %s, %s, %s
WHERE NOT EXISTS (
    SELECT 1 FROM dead_letters
    WHERE digest = %s AND received_at > now() - interval '1 day'
)"""


async def _write_dead(conn: AsyncConnection, dead: list[DeadLetter]) -> int:
    """Dead letters in the batch's transaction; returns how many rows were added."""

    def row(dl: DeadLetter) -> tuple:
        return (dl.topic, dl.reason[:1000], len(dl.payload), dl.kept_payload, dl.digest)

    fresh = [dl for dl in dead if not dl.redelivered]
    added = len(fresh)
    async with conn.cursor() as cur:
        if fresh:
            async with cur.copy(f"COPY dead_letters ({DEAD_COLS}) FROM STDIN") as copy:
                for dl in fresh:
                    await copy.write_row(row(dl))
        for dl in dead:
            if dl.redelivered:
                await cur.execute(INSERT_DEAD_ONCE, (*row(dl), dl.digest))
                added += cur.rowcount
    return added
