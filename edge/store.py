"""On-disk store of the agent: the event queue (store-and-forward) and a few settings.

SQLite in WAL mode with `synchronous=FULL`: an event is on disk (fsync'd)
before `put` returns, so it survives a crash or a power cut, and a half-written
transaction is rolled back on the next open. Only encoded **events** are kept
here (small JSON documents), plus the last applied room configuration and the
last room state; never an image.

The queue is bounded: when full, the oldest `motion` events are dropped first,
then the oldest of any type, and the number dropped is counted.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    topic   TEXT NOT NULL,
    payload BLOB NOT NULL,
    kind    TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Queued:
    id: int
    topic: str
    payload: bytes
    kind: str


class Store:
    """Thread-safe; every call is one short transaction."""

    def __init__(self, path: Path | None, max_events: int = 20000) -> None:
        self.path = path
        self.max_events = max_events
        self.dropped = 0
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            target = str(path)
        else:
            target = ":memory:"
        self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            os.chmod(path, 0o600)
        self._db.executescript(SCHEMA)

    @classmethod
    def for_device(cls, state_dir: Path | None, name: str, max_events: int) -> Store:
        return cls(state_dir / f"{name}.sqlite" if state_dir else None, max_events)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- event queue -----------------------------------------------------------------

    def put(self, topic: str, payload: bytes, kind: str) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (n,) = self._db.execute("SELECT count(*) FROM queue").fetchone()
                if n >= self.max_events:
                    self._drop(n - self.max_events + 1)
                cur = self._db.execute(
                    "INSERT INTO queue (topic, payload, kind, created) VALUES (?, ?, ?, ?)",
                    (topic, payload, kind, time.time()),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return int(cur.lastrowid or 0)

    def _drop(self, n: int) -> None:
        rows = self._db.execute(
            "SELECT id FROM queue WHERE kind = 'motion' ORDER BY id LIMIT ?", (n,)
        ).fetchall()
        if len(rows) < n:
            rows += self._db.execute(
                "SELECT id FROM queue WHERE kind != 'motion' ORDER BY id LIMIT ?", (n - len(rows),)
            ).fetchall()
        self._db.executemany("DELETE FROM queue WHERE id = ?", rows)
        self.dropped += len(rows)

    def peek(self, limit: int = 1) -> list[Queued]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, kind FROM queue ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [Queued(int(r[0]), r[1], bytes(r[2]), r[3]) for r in rows]

    def remove(self, item_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM queue WHERE id = ?", (item_id,))

    def __len__(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT count(*) FROM queue").fetchone()
        return int(n)

    # -- small settings -----------------------------------------------------------------

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
