"""The gateway's store-and-forward spool: site messages on disk until the centre has them.

SQLite in WAL mode, `synchronous=FULL` by default: a message is on disk before the
local broker gets its acknowledgement, so neither a broken link nor a power cut loses it.
Writes are grouped (one transaction, one fsync, for every message that arrived meanwhile).

**Bounded by disk** (`max_bytes`, topic + payload bytes). When a new batch does not fit,
the oldest messages are dropped by class, least important first, and counted:

| class | what | dropped |
|---|---|---|
| 0 | heartbeats | first |
| 1 | motion events | next |
| 2 | states, availability, config and command answers | next |
| 3 | every other event (possible falls, camera covered, …) | **never**: the spool stops |
|   |                                                         | taking messages instead |

When only class 3 is left the spool refuses (`SpoolFull`); the bridge then stops
acknowledging to the local broker, which queues (and the room devices queue on their own
disks) until the link drains the spool. From `warn_ratio` of the bound the gateway raises
a system alert and the metric `nattillsyn_gateway_spool_fill_ratio` shows it.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from nattillsyn.protocol import TopicKind
from nattillsyn.sqlite_queue import SqliteQueue

SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    topic   TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain  INTEGER NOT NULL,
    cls     INTEGER NOT NULL,
    size    INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS spool_cls ON spool (cls, id);
"""
TOTALS = "SELECT count(*), coalesce(sum(size), 0) FROM spool"
PROTECTED = 3
CLASS_NAMES = {0: "heartbeat", 1: "motion", 2: "state", 3: "event"}


def message_class(kind: TopicKind | None, payload: bytes) -> int:
    """Drop class of a site message (see the module doc); unknown kinds are protected."""
    if kind is TopicKind.heartbeat:
        return 0
    if kind is TopicKind.event:
        # Cheap test without parsing: the contract encodes the type as "type":"motion".
        return 1 if b'"type":"motion"' in payload else PROTECTED
    if kind in (
        TopicKind.state,
        TopicKind.availability,
        TopicKind.config_state,
        TopicKind.command_response,
    ):
        return 2
    return PROTECTED


class SpoolFull(Exception):
    """Only undroppable messages are left and the new ones do not fit."""


@dataclass(frozen=True)
class Item:
    id: int
    topic: str
    payload: bytes
    retain: bool


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes
    retain: bool
    cls: int

    @property
    def size(self) -> int:
        return len(self.topic) + len(self.payload)


class Spool(SqliteQueue):
    """Thread-safe; every call is one short transaction (run them off the event loop).
    `get`/`set` keep the upload's watermarks."""

    def __init__(
        self,
        path: Path | None,
        max_bytes: int,
        warn_ratio: float = 0.8,
        synchronous: str = "FULL",
    ) -> None:
        super().__init__(path, SCHEMA, synchronous)
        self.max_bytes = max_bytes
        self.warn_ratio = warn_ratio
        self.dropped: dict[int, int] = {c: 0 for c in CLASS_NAMES}
        self._recount(None)

    def _recount(self, db: sqlite3.Connection | None) -> None:
        (row,) = db.execute(TOTALS).fetchall() if db else self.read(TOTALS)
        self.count, self.bytes = int(row[0]), int(row[1])

    @property
    def fill_ratio(self) -> float:
        return self.bytes / self.max_bytes if self.max_bytes else 0.0

    @property
    def warning(self) -> bool:
        return self.fill_ratio >= self.warn_ratio

    def put_many(self, items: list[Incoming]) -> int:
        """Store a batch (all or none); returns how many older messages were dropped for it.
        Raises SpoolFull when only undroppable messages are left and the batch does not fit."""
        if not items:
            return 0
        need = sum(i.size for i in items)
        now = time.time()
        # Counters change under the lock; on a rollback they are read again from the file.
        with self.transaction(on_rollback=self._recount) as db:
            dropped = 0
            if self.bytes + need > self.max_bytes:
                dropped = self._make_room(db, self.bytes + need - self.max_bytes)
            db.executemany(
                "INSERT INTO spool (topic, payload, retain, cls, size, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(i.topic, i.payload, int(i.retain), i.cls, i.size, now) for i in items],
            )
            self.count += len(items)
            self.bytes += need
        return dropped

    def _make_room(self, db: sqlite3.Connection, excess: int) -> int:
        """Delete the oldest droppable messages until `excess` bytes are free."""
        freed = 0
        dropped = 0
        for cls in (0, 1, 2):
            while freed < excess:
                rows = db.execute(
                    "SELECT id, size FROM spool WHERE cls = ? ORDER BY id LIMIT 500", (cls,)
                ).fetchall()
                if not rows:
                    break
                take = []
                for rid, size in rows:
                    take.append((rid,))
                    freed += size
                    if freed >= excess:
                        break
                db.executemany("DELETE FROM spool WHERE id = ?", take)
                self.dropped[cls] += len(take)
                dropped += len(take)
                self.count -= len(take)
                self.bytes -= sum(s for _, s in rows[: len(take)])
            if freed >= excess:
                return dropped
        raise SpoolFull(
            f"spool full ({self.bytes} of {self.max_bytes} bytes) with undroppable messages"
        )

    def peek(self, after_id: int = 0, limit: int = 500) -> list[Item]:
        rows = self.read(
            "SELECT id, topic, payload, retain FROM spool WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [Item(int(r[0]), r[1], bytes(r[2]), bool(r[3])) for r in rows]

    def remove(self, ids: list[int]) -> None:
        if not ids:
            return
        where = f"WHERE id IN ({','.join('?' * len(ids))})"
        with self.transaction(on_rollback=self._recount) as db:
            row = db.execute(f"{TOTALS} {where}", ids).fetchone()
            db.execute(f"DELETE FROM spool {where}", ids)
            self.count -= int(row[0])
            self.bytes -= int(row[1])

    def oldest_age(self) -> float:
        ((oldest,),) = self.read("SELECT min(created) FROM spool")
        return max(0.0, time.time() - oldest) if oldest is not None else 0.0


__all__ = ["CLASS_NAMES", "Incoming", "Item", "Spool", "SpoolFull", "message_class"]
