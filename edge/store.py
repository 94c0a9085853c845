"""On-disk store of the agent: the event queue (store-and-forward) and a few settings.

SQLite in WAL mode with `synchronous=FULL`: an event is on disk (fsync'd)
before `put` returns, so it survives a crash or a power cut, and a half-written
transaction is rolled back on the next open. Only encoded **events** are kept
here (small JSON documents), plus the last applied room configuration and the
last room state; never an image.

The file itself (WAL, fsync, the key-value table) is `nattillsyn.sqlite_queue`.
The queue is bounded: when full, the oldest `motion` events are dropped first,
then the oldest of any type, and the number dropped is counted.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from nattillsyn.sqlite_queue import SqliteQueue

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    topic   TEXT NOT NULL,
    payload BLOB NOT NULL,
    kind    TEXT NOT NULL,
    created REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Queued:
    id: int
    topic: str
    payload: bytes
    kind: str


class Store(SqliteQueue):
    """Thread-safe; every call is one short transaction. `get`/`set` keep small settings."""

    def __init__(self, path: Path | None, max_events: int = 20000) -> None:
        super().__init__(path, SCHEMA)
        self.max_events = max_events
        self.dropped = 0

    @classmethod
    def for_device(cls, state_dir: Path | None, name: str, max_events: int) -> Store:
        return cls(state_dir / f"{name}.sqlite" if state_dir else None, max_events)

    def put(self, topic: str, payload: bytes, kind: str) -> int:
        with self.transaction() as db:
            (n,) = db.execute("SELECT count(*) FROM queue").fetchone()
            if n >= self.max_events:
                self._drop(db, n - self.max_events + 1)
            cur = db.execute(
                "INSERT INTO queue (topic, payload, kind, created) VALUES (?, ?, ?, ?)",
                (topic, payload, kind, time.time()),
            )
        return int(cur.lastrowid or 0)

    def _drop(self, db: sqlite3.Connection, n: int) -> None:
        rows = db.execute(
            "SELECT id FROM queue WHERE kind = 'motion' ORDER BY id LIMIT ?", (n,)
        ).fetchall()
        if len(rows) < n:
            rows += db.execute(
                "SELECT id FROM queue WHERE kind != 'motion' ORDER BY id LIMIT ?", (n - len(rows),)
            ).fetchall()
        db.executemany("DELETE FROM queue WHERE id = ?", rows)
        self.dropped += len(rows)

    def peek(self, limit: int = 1) -> list[Queued]:
        rows = self.read("SELECT id, topic, payload, kind FROM queue ORDER BY id LIMIT ?", (limit,))
        return [Queued(int(r[0]), r[1], bytes(r[2]), r[3]) for r in rows]

    def remove(self, item_id: int) -> None:
        self.write("DELETE FROM queue WHERE id = ?", (item_id,))

    def __len__(self) -> int:
        return int(self.read("SELECT count(*) FROM queue")[0][0])
