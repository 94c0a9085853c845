"""What the ingest benchmark reads from the database, outside the ingest processes.

- An audit table without any uniqueness guard, filled by an AFTER INSERT row trigger on
  events, room_states and heartbeats: a row that ON CONFLICT DO NOTHING skips fires no
  trigger, a row stored again does, so `stored_twice` counts what the tables' own keys
  would hide. Its `stored_at` is clock_timestamp() at the insert; the latency uses the
  commit time of the inserting transaction (track_commit_timestamp), which is later.
- Lost by id: every valid id a publisher made (from its id prefixes and counts) that no
  table holds.
- Dead letters matched to the malformed messages sent by sha256 of the payload.
- `inject_double_store` drops the primary keys of the three tables, so replayed and
  redelivered messages are stored again: the check that stored_twice can be non-zero.
"""

from __future__ import annotations

import time
from collections import Counter

import psycopg

STORED = ("events", "room_states", "heartbeats")

AUDIT = """
CREATE TABLE bench_audit (
    tbl        text NOT NULL,
    id         uuid NOT NULL,
    ts         timestamptz NOT NULL,
    stored_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION bench_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {schema}.bench_audit (tbl, id, ts) VALUES (TG_ARGV[0], NEW.id, NEW.ts);
    RETURN NULL;
END
$$;
"""
TRIGGER = (
    "CREATE TRIGGER bench_audit AFTER INSERT ON {table} "
    "FOR EACH ROW EXECUTE FUNCTION {schema}.bench_audit_row('{table}')"
)


def connect(db_url: str, schema: str) -> psycopg.Connection:
    conn = psycopg.connect(db_url, autocommit=True)
    conn.execute(f"SET search_path TO {schema}, public")
    return conn


def install_audit(db_url: str, schema: str, *, inject_double_store: bool = False) -> None:
    with connect(db_url, schema) as conn:
        conn.execute(AUDIT.format(schema=schema))
        for table in STORED:
            conn.execute(TRIGGER.format(table=table, schema=schema))
            if inject_double_store:
                pkey = conn.execute(
                    "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass "
                    "AND contype = 'p'",
                    (f"{schema}.{table}",),
                ).fetchone()
                if pkey:
                    conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {pkey[0]}")


def progress(conn: psycopg.Connection) -> int:
    """Rows inserted into the audit and dead-letter tables so far, from the statistics
    (cheap; may lag by a second and counts rows of aborted transactions too)."""
    row = conn.execute(
        "SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables "
        "WHERE schemaname = current_schema() AND relname IN ('bench_audit', 'dead_letters')"
    ).fetchone()
    return int(row[0])


def exact_done(conn: psycopg.Connection) -> tuple[int, int]:
    """(distinct messages stored, dead letters) committed so far."""
    stored = conn.execute("SELECT count(DISTINCT (tbl, id)) FROM bench_audit").fetchone()[0]
    dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    return int(stored), int(dead)


def wait_stored(
    db_url: str, schema: str, want_stored: int, want_dead: int, *, stall_s: float, limit_s: float
) -> None:
    """Until every valid message is stored and every malformed one dead-lettered, or no
    progress for `stall_s`, or `limit_s` in all (the missing then count as lost)."""
    t0 = time.monotonic()
    with connect(db_url, schema) as conn:
        seen, since = -1, time.monotonic()
        while time.monotonic() - t0 < limit_s:
            n = progress(conn)
            if n != seen:
                seen, since = n, time.monotonic()
            if n >= want_stored + want_dead:
                stored, dead = exact_done(conn)
                if stored >= want_stored and dead >= want_dead:
                    return
            elif time.monotonic() - since > stall_s:
                return
            time.sleep(0.5)


def expected_ids(gens: list[tuple[str, int, int]]) -> str:
    """SQL for the valid ids the publishers made: (id prefix, count, invalid_every)."""
    rows = ", ".join(f"('{p}', {n}, {every})" for p, n, every in gens) or "(NULL, 0, 0)"
    return (
        f"SELECT (p.prefix || lpad(to_hex(g), 12, '0'))::uuid AS id "
        f"FROM (VALUES {rows}) AS p(prefix, n, every), generate_series(1, p.n) AS g "
        f"WHERE p.every = 0 OR g % p.every <> 0"
    )


def account(
    db_url: str, schema: str, gens: list[tuple[str, int, int]], bad_hashes: list[str], t_last: float
) -> dict:
    """Lost, stored twice, dead letters matched, commit times, and how many messages were
    committed by `t_last` (the end of publishing): the phase's accounts."""
    with connect(db_url, schema) as conn:
        out: dict = {}
        stored_ids = " UNION ALL ".join(f"SELECT id FROM {t}" for t in STORED)
        conn.execute(f"CREATE TEMP TABLE bench_stored AS SELECT DISTINCT id FROM ({stored_ids}) s")
        conn.execute(f"CREATE TEMP TABLE bench_expected AS {expected_ids(gens)}")
        conn.execute("ANALYZE bench_stored; ANALYZE bench_expected")
        out["expected"] = conn.execute("SELECT count(*) FROM bench_expected").fetchone()[0]
        out["stored"] = conn.execute("SELECT count(*) FROM bench_stored").fetchone()[0]
        out["lost"] = conn.execute(
            "SELECT count(*) FROM bench_expected e "
            "WHERE NOT EXISTS (SELECT 1 FROM bench_stored s WHERE s.id = e.id)"
        ).fetchone()[0]
        out["unexpected"] = conn.execute(
            "SELECT count(*) FROM bench_stored s "
            "WHERE NOT EXISTS (SELECT 1 FROM bench_expected e WHERE e.id = s.id)"
        ).fetchone()[0]
        out["lost_runs"] = lost_runs(conn) if out["lost"] else []
        conn.execute("DROP TABLE bench_stored, bench_expected")
        rows, twice, first, last, by_end = conn.execute(
            "SELECT coalesce(sum(n), 0), coalesce(sum(n - 1), 0), min(c0), max(c1),"
            "       count(*) FILTER (WHERE c0 <= to_timestamp(%s)) FROM ("
            "  SELECT count(*) AS n, min(pg_xact_commit_timestamp(xmin)) AS c0,"
            "         max(pg_xact_commit_timestamp(xmin)) AS c1"
            "  FROM bench_audit GROUP BY tbl, id) a",
            (t_last,),
        ).fetchone()
        out["audit_rows"] = int(rows)
        out["stored_twice"] = int(twice)
        dead = conn.execute(
            "SELECT encode(sha256(payload), 'hex'), pg_xact_commit_timestamp(xmin) "
            "FROM dead_letters"
        ).fetchall()
        sent = Counter(bad_hashes)
        got = Counter(h for h, _c in dead)
        out["dead_letters"] = len(dead)
        out["dead_letters_sent"] = len(bad_hashes)
        out["dead_letters_matched"] = sum((sent & got).values())
        out["dead_letters_missing"] = sum((sent - got).values())
        # A malformed message dead-lettered again (a redelivery: dead_letters has no key)
        # or a dead letter of no message sent.
        out["dead_letters_stored_twice"] = sum(n for h, n in (got - sent).items() if h in sent)
        out["dead_letters_unknown"] = sum(n for h, n in got.items() if h not in sent)
        twice = {h for h, n in (got - sent).items() if h in sent}
        out["dead_letters_twice_commits"] = [  # when each copy was committed (epoch s)
            sorted(round(c.timestamp(), 3) for h2, c in dead if h2 == h and c is not None)
            for h in sorted(twice)[:5]
        ]
        out["committed_by_publish_end"] = int(by_end) + sum(
            1 for _h, c in dead if c is not None and c.timestamp() <= t_last
        )
        commits = [c for _h, c in dead if c is not None] + [c for c in (first, last) if c]
        out["first_commit"] = min(commits).timestamp() if commits else 0.0
        out["last_commit"] = max(commits).timestamp() if commits else 0.0
        return out


def lost_runs(conn: psycopg.Connection, limit: int = 8) -> list[dict]:
    """Where the lost ids are: runs of consecutive ids of one publisher connection, the
    longest first, each with the source time of the message stored just before it (so a
    run can be put next to a fault)."""
    lost = conn.execute(
        "SELECT left(id::text, 24), ('x' || right(id::text, 12))::bit(48)::bigint "
        "FROM bench_expected e WHERE NOT EXISTS (SELECT 1 FROM bench_stored s WHERE s.id = e.id) "
        "ORDER BY 1, 2"
    ).fetchall()
    runs: list[list] = []
    for prefix, n in lost:
        if runs and runs[-1][0] == prefix and runs[-1][2] == n - 1:
            runs[-1][2] = n
        else:
            runs.append([prefix, n, n])
    runs.sort(key=lambda r: r[1] - r[2])
    out = []
    for prefix, first, last in runs[:limit]:
        before = conn.execute(
            "SELECT extract(epoch FROM min(ts)) FROM bench_audit WHERE id = %s::uuid",
            (f"{prefix}{first - 1:012x}",),
        ).fetchone()[0]
        out.append(
            {
                "ids": f"{prefix}{first:012x}",
                "n": last - first + 1,
                "after_ts": before and float(before),
            }
        )
    return out


def latency_ms(db_url: str, schema: str) -> dict:
    """Source time (set by the publisher just before sending) to commit, over the first
    store of every message; and to clock_timestamp() at the row's insert."""
    with connect(db_url, schema) as conn:
        row = conn.execute(
            "SELECT percentile_cont(ARRAY[0.5, 0.99, 1.0]) WITHIN GROUP (ORDER BY c - t),"
            "       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY s - t), count(*) "
            "FROM (SELECT DISTINCT ON (tbl, id) extract(epoch FROM ts) AS t,"
            "        extract(epoch FROM stored_at) AS s,"
            "        extract(epoch FROM pg_xact_commit_timestamp(xmin)) AS c"
            "      FROM bench_audit ORDER BY tbl, id, stored_at) f"
        ).fetchone()
    commit, insert, n = row
    if not n:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "n": n,
        "p50_ms": round(commit[0] * 1000, 1),
        "p99_ms": round(commit[1] * 1000, 1),
        "max_ms": round(commit[2] * 1000, 1),
        "insert_p50_ms": round(insert[0] * 1000, 1),
        "insert_p99_ms": round(insert[1] * 1000, 1),
    }
