"""Benchmark: evaluation report queries on the summary tables against the raw tables.

    python -m bench.report --json

Generates one year of synthetic nights for 200 residents in 10 units (evaluation/synthetic.py,
loaded with COPY), refreshes the summaries, then times the same report, built by the same code,
reading (a) the summary tables (TimescaleDB continuous aggregate underneath when present, plain
PostgreSQL summary tables otherwise) and (b) the raw tables, in the same run. Two reports:
one unit over the year, and one unit compared with all ten units over the year. Both sources
must give the same figures; the run fails otherwise. Targets: unit-year < 1 s, all units < 3 s,
at least 10× faster than raw.

Database: NATTILLSYN_DATABASE_URL, else a private PostgreSQL with TimescaleDB preloaded when it is
installed (`--plain`: without); the JSON says which (`backend`). The data goes into a schema of
its own, dropped at the end (unless --keep).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import time
from datetime import date, timedelta

import psycopg
from psycopg import sql

from nattillsyn.app.embedded import PrivatePostgres
from nattillsyn.db.migrate import migrate
from nattillsyn.evaluation import load, report, store, synthetic
from nattillsyn.settings.evaluation import EvaluationSettings

TARGETS = {"unit_year_s": 1.0, "all_units_s": 3.0, "speedup_vs_raw": 10.0}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _close(a: object, b: object, path: str = "") -> list[str]:
    """Paths where two report dumps differ beyond float summation noise."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in set(a) | set(b):
            out += _close(a.get(k), b.get(k), f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} items"]
        return [
            d
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for d in _close(x, y, f"{path}[{i}]")
        ]
    if isinstance(a, float) and isinstance(b, float):
        return [] if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9) else [f"{path}: {a} vs {b}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def same(r1: report.Report, r2: report.Report) -> list[str]:
    skip = {"generated_at", "source", "residents"}  # pseudonyms are new per report
    diffs = _close(
        r1.model_dump(mode="json", exclude=skip), r2.model_dump(mode="json", exclude=skip)
    )
    return diffs


async def timed(conn, req: report.Request, settings, source: str, repeat: int):
    times, rep = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        rep = await report.build(conn, req, settings, source=source, refresh=False)  # type: ignore[arg-type]
        times.append(time.perf_counter() - t0)
    return statistics.median(times), rep


async def run(url: str, args: argparse.Namespace) -> dict:
    schema = f"bench_report_{os.getpid()}"
    await migrate(url, schema)
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        await conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))
        # Keep a year of raw rows for the comparison: storage's retention (heartbeats 30 days,
        # states 90) would otherwise let TimescaleDB's jobs drop them during the run.
        cur = await conn.execute("SELECT to_regproc('storage_set_policy') IS NOT NULL")
        if (await cur.fetchone())[0]:
            for table in ("events", "room_states", "heartbeats"):
                await conn.execute("SELECT storage_set_policy(%s, NULL, NULL)", (table,))
        cur = await conn.execute(
            "SELECT count(*) > 0 FROM pg_extension WHERE extname = 'timescaledb'"
        )
        timescale = (await cur.fetchone())[0]
        units = synthetic.make_units(args.units, args.residents, seed=args.seed)
        last = date(2025, 12, 31)
        first = last - timedelta(days=args.nights - 1)
        log(f"generating {args.units} units × {args.residents} residents × {args.nights} nights…")
        t0 = time.perf_counter()
        loaded = load.Loaded()
        for data in synthetic.generate(units, first, args.nights, seed=args.seed):
            t_load = time.perf_counter()
            part = await load.load(conn, [data])
            for k, v in part.rows.items():
                loaded.add(k, v)
            loaded.units += part.units
            log(f"  {data.unit.site}: loaded in {time.perf_counter() - t_load:.1f} s")
        generate_load_s = time.perf_counter() - t0
        await conn.execute("ANALYZE")
        log(f"generated and loaded in {generate_load_s:.1f} s: {loaded.rows}")
        t0 = time.perf_counter()
        resident_nights = await store.refresh(conn)
        refresh_s = time.perf_counter() - t0
        await conn.execute("ANALYZE")
        log(f"summaries refreshed in {refresh_s:.1f} s ({resident_nights} resident-nights)")

        settings = EvaluationSettings()
        sites = [u.site for u in units]
        unit_req = report.Request(sites[0], first, last)
        all_req = report.Request(sites[0], first, last, compare=tuple(sites))
        await timed(conn, all_req, settings, "summary", 1)  # warm caches for both paths alike
        unit_s, unit_sum = await timed(conn, unit_req, settings, "summary", args.repeat)
        all_s, all_sum = await timed(conn, all_req, settings, "summary", args.repeat)
        log(f"summary: unit-year {unit_s:.3f} s, all units {all_s:.3f} s")
        raw_unit_s, unit_raw = await timed(conn, unit_req, settings, "raw", 1)
        raw_all_s, all_raw = await timed(conn, all_req, settings, "raw", 1)
        log(f"raw:     unit-year {raw_unit_s:.3f} s, all units {raw_all_s:.3f} s")
        diffs = same(unit_sum, unit_raw) + same(all_sum, all_raw)
        if diffs:
            log("summary and raw reports differ:\n  " + "\n  ".join(diffs[:20]))
        s = all_sum.summary
        result = {
            "benchmark": "report",
            "backend": "timescaledb" if timescale else "postgresql",
            "timescaledb": timescale,
            "units": args.units,
            "residents": args.units * args.residents,
            "nights": args.nights,
            "resident_nights": resident_nights,
            "rows": loaded.rows,
            "generate_load_s": round(generate_load_s, 2),
            "refresh_s": round(refresh_s, 2),
            "unit_year_s": round(unit_s, 4),
            "all_units_s": round(all_s, 4),
            "raw_unit_year_s": round(raw_unit_s, 3),
            "raw_all_units_s": round(raw_all_s, 3),
            "speedup_unit_year": round(raw_unit_s / unit_s, 1),
            "speedup_all_units": round(raw_all_s / all_s, 1),
            "speedup_vs_raw": round(min(raw_unit_s / unit_s, raw_all_s / all_s), 1),
            "same_results": not diffs,
            "example": {
                "unit": s.name,
                "visits_per_resident_night": s.visits_per_resident_night.value,
                "avoided_share": s.avoided_share.value,
                "awakening_rate_physical": s.awakening_rate_physical.value,
                "awakening_rate_digital": s.awakening_rate_digital.value,
            },
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        result["meets_targets"] = (
            result["unit_year_s"] < TARGETS["unit_year_s"]
            and result["all_units_s"] < TARGETS["all_units_s"]
            and result["speedup_vs_raw"] >= TARGETS["speedup_vs_raw"]
            and result["same_results"]
        )
        return result
    finally:
        if not args.keep:
            # Hypertables one by one: a whole schema of chunks can exceed the lock table.
            for kind, name in (("MATERIALIZED VIEW", "eval_heartbeat_5m"), ("TABLE", "heartbeats"),
                               ("TABLE", "room_states"), ("TABLE", "events")):  # fmt: skip
                await conn.execute(
                    sql.SQL("DROP {} IF EXISTS {} CASCADE").format(
                        sql.SQL(kind), sql.Identifier(schema, name)
                    )
                )
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
        else:
            log(f"kept schema {schema}")
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print only the JSON result on stdout")
    p.add_argument("--units", type=int, default=10)
    p.add_argument("--residents", type=int, default=20, help="residents per unit")
    p.add_argument("--nights", type=int, default=365)
    p.add_argument("--repeat", type=int, default=5, help="timed repetitions (median)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the benchmark schema")
    p.add_argument("--plain", action="store_true", help="plain PostgreSQL even if TimescaleDB")
    args = p.parse_args(argv)
    url = os.environ.get("NATTILLSYN_DATABASE_URL")
    pg = None
    if not url:
        # TimescaleDB (the production store) when it is installed, like bench.ingest.
        pg = PrivatePostgres(timescale=not args.plain)
        if not pg.timescale and not args.plain:
            log("TimescaleDB is not installed: measuring plain PostgreSQL")
        url = pg.start()
    try:
        result = asyncio.run(run(url, args))
    finally:
        if pg is not None:
            pg.stop()
    if not args.json:
        for k, v in result.items():
            print(f"{k:>22}: {v}")
    print(json.dumps(result))
    return 0 if result["same_results"] else 1


if __name__ == "__main__":
    sys.exit(main())
