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

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from nattillsyn.protocol import TopicKind

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
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
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


class Spool:
    """Thread-safe; every call is one short transaction (run them off the event loop)."""

    def __init__(
        self,
        path: Path | None,
        max_bytes: int,
        warn_ratio: float = 0.8,
        synchronous: str = "FULL",
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.warn_ratio = warn_ratio
        self.dropped: dict[int, int] = {c: 0 for c in CLASS_NAMES}
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(path) if path else ":memory:", check_same_thread=False, isolation_level=None
        )
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            os.chmod(path, 0o600)
        self._db.executescript(SCHEMA)
        row = self._db.execute("SELECT count(*), coalesce(sum(size), 0) FROM spool").fetchone()
        self.count, self.bytes = int(row[0]), int(row[1])

    def close(self) -> None:
        with self._lock:
            self._db.close()

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
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                dropped = 0
                if self.bytes + need > self.max_bytes:
                    dropped = self._make_room(self.bytes + need - self.max_bytes)
                self._db.executemany(
                    "INSERT INTO spool (topic, payload, retain, cls, size, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [(i.topic, i.payload, int(i.retain), i.cls, i.size, now) for i in items],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                # Counters were changed by _make_room inside the rolled-back transaction.
                row = self._db.execute(
                    "SELECT count(*), coalesce(sum(size), 0) FROM spool"
                ).fetchone()
                self.count, self.bytes = int(row[0]), int(row[1])
                raise
            self.count += len(items)
            self.bytes += need
            return dropped

    def _make_room(self, excess: int) -> int:
        """Delete the oldest droppable messages until `excess` bytes are free."""
        freed = 0
        dropped = 0
        for cls in (0, 1, 2):
            while freed < excess:
                rows = self._db.execute(
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
                self._db.executemany("DELETE FROM spool WHERE id = ?", take)
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
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, retain FROM spool WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [Item(int(r[0]), r[1], bytes(r[2]), bool(r[3])) for r in rows]

    def remove(self, ids: list[int]) -> None:
        if not ids:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    f"SELECT count(*), coalesce(sum(size), 0) FROM spool WHERE id IN "
                    f"({','.join('?' * len(ids))})",
                    ids,
                ).fetchone()
                self._db.execute(f"DELETE FROM spool WHERE id IN ({','.join('?' * len(ids))})", ids)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self.count -= int(row[0])
            self.bytes -= int(row[1])

    def oldest_age(self) -> float:
        with self._lock:
            row = self._db.execute("SELECT min(created) FROM spool").fetchone()
        return max(0.0, time.time() - row[0]) if row and row[0] is not None else 0.0

    # -- small persistent values (watermarks of the upload) -----------------------------

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


__all__ = ["CLASS_NAMES", "Incoming", "Item", "Spool", "SpoolFull", "message_class"]
