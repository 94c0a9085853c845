"""Backup and restore on a real PostgreSQL: pg_dump, pg_restore into a fresh database.

The source database is migrated and filled like a live one; after the round trip every
table has the same rows, the access log is still append-only, migrations are recorded
(so `nattillsyn db migrate` on the restored database applies nothing) and identity
columns continue after the restored rows.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from nattillsyn.db.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]
BACKUP = ROOT / "deploy" / "backup" / "nattillsyn-backup"
RESTORE = ROOT / "deploy" / "backup" / "nattillsyn-restore"

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("pg_dump", "pg_restore", "psql", "createdb")),
    reason="PostgreSQL client tools are not installed (Debian package postgresql-client)",
)

SEED = """
INSERT INTO sites (id, name) VALUES ('solgarden', 'Solgården');
INSERT INTO rooms (site_id, id, name)
    SELECT 'solgarden', 'rum-' || i, 'Rum ' || i FROM generate_series(101, 140) i;
INSERT INTO devices (site_id, id, room_id, availability)
    SELECT 'solgarden', 'edge-' || i, 'rum-' || i, 'online' FROM generate_series(101, 140) i;
INSERT INTO residents (site_id, room_id, display_name, monitoring_active)
    SELECT 'solgarden', 'rum-' || i, 'Boende ' || i, true FROM generate_series(101, 140) i;
INSERT INTO events (ts, id, site, room, device, session, seq, event_id, type, phase, payload)
    SELECT now() - i * interval '1 second', gen_random_uuid(), 'solgarden', 'rum-101',
           'edge-101', 1, i, gen_random_uuid(), 'motion', 'new', '{"v": 1}'::jsonb
    FROM generate_series(1, 5000) i;
INSERT INTO heartbeats (ts, id, site, room, device, session, seq, payload)
    SELECT now() - i * interval '15 seconds', gen_random_uuid(), 'solgarden', 'rum-101',
           'edge-101', 1, i, '{}'::jsonb
    FROM generate_series(1, 2000) i;
INSERT INTO alerts (id, site, room, kind, priority, status, title, started_at)
    SELECT gen_random_uuid(), 'solgarden', 'rum-' || (100 + i % 40 + 1), 'possible_fall', 'high',
           'resolved', 'Möjligt fall', now() - i * interval '1 hour'
    FROM generate_series(1, 300) i;
INSERT INTO alert_history (alert_id, status, by_user) SELECT id, 'firing', NULL FROM alerts;
INSERT INTO dead_letters (topic, reason, size, payload)
    SELECT 'nattillsyn/x', 'invalid json', 3, '\\x7b7b7b'::bytea FROM generate_series(1, 7);
INSERT INTO audit_log (username, role, action, purpose, what, site)
    SELECT 'natt', 'night_staff', 'read', 'alert', 'alert ' || i, 'solgarden'
    FROM generate_series(1, 1200) i;
"""


def _tables(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def _counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            t: conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))
            ).fetchone()[0]
            for t in _tables(conn)
        }


@pytest.fixture
def databases(database_url: str, test_id: str):
    """Two database names on the test server: a filled source and a restore target."""
    info = conninfo_to_dict(database_url)
    src, dst = f"nt_bk_{test_id}_src", f"nt_bk_{test_id}_dst"
    admin = make_conninfo(database_url, dbname="postgres")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env |= {
        "PGHOST": info.get("host", "127.0.0.1"),
        "PGPORT": str(info.get("port", 5432)),
        "PGUSER": info.get("user", "postgres"),
    }
    if info.get("password"):  # the scripts take passwords from a file, never the command line
        raise pytest.skip("test server needs a password; set up PGPASSFILE to run this")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(src)))
    try:
        yield {
            "src": make_conninfo(database_url, dbname=src),
            "dst": make_conninfo(database_url, dbname=dst),
            "src_name": src,
            "dst_name": dst,
            "env": env,
        }
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in (src, dst):
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def _run(cmd: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_backup_and_restore_into_a_fresh_database(databases, tmp_path: Path):
    db = databases
    asyncio.run(migrate(db["src"]))
    with psycopg.connect(db["src"], autocommit=True) as conn:
        conn.execute(SEED)
    before = _counts(db["src"])
    assert before["events"] == 5000 and before["audit_log"] == 1200

    out = tmp_path / "backups"
    res = _run(["sh", str(BACKUP), "-o", str(out), db["src_name"]], db["env"])
    assert res.returncode == 0, res.stderr
    dumps = sorted(out.glob("nattillsyn-*.dump"))
    assert len(dumps) == 1 and Path(f"{dumps[0]}.sha256").exists()

    res = _run(["sh", str(RESTORE), str(dumps[0]), db["dst_name"]], db["env"])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "append-only triggers 2" in res.stdout
    assert _counts(db["dst"]) == before

    with psycopg.connect(db["dst"], autocommit=True) as conn:
        # The access log stays append-only after a restore.
        for stmt in (
            "UPDATE audit_log SET purpose = 'x'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(stmt)
        # Identity columns continue after the restored rows.
        new_id = conn.execute(
            "INSERT INTO audit_log (username, role, action, purpose, what) "
            "VALUES ('admin', 'sysadmin', 'change', 'restore check', 'x') RETURNING id"
        ).fetchone()[0]
        assert new_id > 1200
        # Resident data came back intact, not just counted.
        names = conn.execute("SELECT count(DISTINCT display_name) FROM residents").fetchone()
        assert names == (40,)
    # On TimescaleDB the telemetry tables come back as hypertables, with their chunks.
    hypertables = (
        "SELECT hypertable_name, num_chunks FROM timescaledb_information.hypertables "
        "WHERE hypertable_schema = 'public' ORDER BY 1"
    )
    with psycopg.connect(db["src"]) as src, psycopg.connect(db["dst"]) as dst:
        if src.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
            before_ht = src.execute(hypertables).fetchall()
            assert {"events", "heartbeats", "room_states"} <= {name for name, _ in before_ht}
            assert dst.execute(hypertables).fetchall() == before_ht
    # Migrations are recorded with their checksums: nothing to apply, nothing refused.
    assert asyncio.run(migrate(db["dst"])) == []


def test_restore_refuses_an_existing_database_and_a_damaged_dump(databases, tmp_path: Path):
    db = databases
    out = tmp_path / "b"
    assert _run(["sh", str(BACKUP), "-o", str(out), db["src_name"]], db["env"]).returncode == 0
    dump = next(out.glob("*.dump"))
    res = _run(["sh", str(RESTORE), str(dump), db["src_name"]], db["env"])
    assert res.returncode == 2 and "exists" in res.stderr
    with open(dump, "r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    res = _run(["sh", str(RESTORE), str(dump), db["dst_name"]], db["env"])
    assert res.returncode == 2 and "checksum" in res.stderr


def test_backup_keeps_the_newest_and_refuses_passwords_in_urls(databases, tmp_path: Path):
    db = databases
    out = tmp_path / "b"
    out.mkdir()
    for stamp in ("20250101T000000Z", "20250102T000000Z", "20250103T000000Z"):
        (out / f"nattillsyn-{stamp}.dump").write_bytes(b"old")
        (out / f"nattillsyn-{stamp}.dump.sha256").write_text("x")
    res = _run(["sh", str(BACKUP), "-o", str(out), "--keep", "2", db["src_name"]], db["env"])
    assert res.returncode == 0, res.stderr
    left = sorted(p.name for p in out.glob("*.dump"))
    assert len(left) == 2 and left[0] == "nattillsyn-20250103T000000Z.dump"
    res = _run(["sh", str(BACKUP), "-o", str(out), "postgresql://u:secret@127.0.0.1/x"], db["env"])
    assert res.returncode == 2 and "secret" not in res.stdout
