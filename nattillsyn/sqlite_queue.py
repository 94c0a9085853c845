"""A store-and-forward queue on one SQLite file, shared by the edge agent and the gateway.

The file holds the owner's queue table (its schema and its drop policy are the owner's:
`nattillsyn.edge.store`, `nattillsyn.gateway.spool`) and a small key-value table for the
few values that must survive a restart. WAL mode with `synchronous=FULL` by default: a row
is on disk (fsync'd) before the call that wrote it returns, so it survives a crash or a
power cut, and a half-written transaction is rolled back on the next open. Without a path
the file is in memory (lost on restart).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

KV_SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);"


class SqliteQueue:
    """Thread-safe; every call is one short transaction (run them off the event loop).

    `schema` creates the owner's tables (idempotent, ``CREATE ... IF NOT EXISTS``)."""

    def __init__(self, path: Path | None, schema: str, synchronous: str = "FULL") -> None:
        self.path = path
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
        self._db.executescript(schema + KV_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @property
    def journal_mode(self) -> str:
        return str(self.read("PRAGMA journal_mode")[0][0])

    def read(self, query: str, params: Sequence[object] = ()) -> list[tuple]:
        """All rows of one query."""
        with self._lock:
            return self._db.execute(query, params).fetchall()

    def write(self, statement: str, params: Sequence[object] = ()) -> int:
        """One statement in its own transaction; the id of the row it inserted, if any."""
        with self._lock:
            return int(self._db.execute(statement, params).lastrowid or 0)

    @contextmanager
    def transaction(
        self, on_rollback: Callable[[sqlite3.Connection], None] | None = None
    ) -> Iterator[sqlite3.Connection]:
        """Several statements as one: all are on disk at the end of the block, or none.
        `on_rollback` runs after a rollback, still under the lock (to resync counters)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                if on_rollback is not None:
                    on_rollback(self._db)
                raise

    # -- small persistent values ----------------------------------------------------------

    def get(self, key: str) -> str | None:
        rows = self.read("SELECT value FROM kv WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set(self, key: str, value: str) -> None:
        self.write(
            "INSERT INTO kv (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


__all__ = ["KV_SCHEMA", "SqliteQueue"]
