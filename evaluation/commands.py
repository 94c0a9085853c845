"""The evaluation commands: `nattillsyn report`, `baseline-import` and `synthesize` (their
arguments are in `cli.py`). Needs the server and report extras (psycopg, NumPy, Jinja2).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
from datetime import date, timedelta

import psycopg
from psycopg import sql

from nattillsyn.settings import Settings, SettingsError

from . import baseline, render, store, synthetic
from .load import load
from .report import Request, build


async def _connect(settings: Settings):
    if settings.database_url is None:
        raise SettingsError("this command needs NATTILLSYN_DATABASE_URL")
    conn = await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True)
    await conn.execute(
        sql.SQL("SET search_path TO {}, public").format(sql.Identifier(settings.database_schema))
    )
    return conn


async def _audit(conn, action: str, what: str, site: str | None, detail: dict) -> None:
    await conn.execute(
        """INSERT INTO audit_log (username, role, action, purpose, what, site, detail)
           VALUES (%s, 'cli', %s, 'evaluation', %s, %s, %s)""",
        (f"cli:{getpass.getuser()}", action, what, site, json.dumps(detail)),
    )


def run_report(settings: Settings, args: argparse.Namespace) -> int:
    ev = settings.evaluation
    given = {
        "minutes_per_visit": args.minutes_per_visit,
        "awakening_window_min": args.awakening_min,
        "k_anonymity": args.k,
    }
    overrides = {k: v for k, v in given.items() if v is not None}
    if overrides:
        ev = ev.model_validate({**ev.model_dump(), **overrides})
    if args.end < args.start:
        raise SettingsError("--to is before --from")
    formats = {f.strip() for f in args.format.split(",") if f.strip()}
    bad = formats - {"html", "csv", "parquet", "json"}
    if bad:
        raise SettingsError(f"unknown format(s): {', '.join(sorted(bad))}")

    async def go() -> int:
        conn = await _connect(settings)
        async with conn:
            names = await store.unit_names(conn)
            if args.unit not in names:
                raise SettingsError(f"no unit {args.unit!r}; units: {', '.join(names) or 'none'}")
            if args.compare == "all":
                compare = tuple(names)
            elif args.compare == "none":
                compare = ()
            else:
                compare = tuple(c.strip() for c in args.compare.split(",") if c.strip())
                unknown = [c for c in compare if c not in names]
                if unknown:
                    raise SettingsError(f"unknown unit(s) to compare: {', '.join(unknown)}")
            req = Request(args.unit, args.start, args.end, compare, args.baseline_from,
                          args.baseline_to)  # fmt: skip
            report = await build(
                conn, req, ev, source="raw" if args.raw else "summary", microdata=True
            )
            files = render.write(report, args.out, formats)
            await _audit(
                conn, "export", "evaluation report", args.unit,
                {"from": str(args.start), "to": str(args.end), "files": [f.name for f in files]},
            )  # fmt: skip
        for f in files:
            print(f)
        s = report.summary
        if not s.suppressed:
            v = s.visits_per_resident_night.value
            print(
                f"{report.name}: {s.residents} residents, {s.resident_nights} resident-nights, "
                f"{v:.2f} physical visits per resident-night, {s.digital_ok} avoided"
                if v is not None
                else f"{report.name}: no nights in the period"
            )
        for n in report.notes:
            print("note:", n)
        return 0

    return asyncio.run(go())


def run_baseline_import(settings: Settings, args: argparse.Namespace) -> int:
    try:
        text = args.file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read {args.file}: {exc}") from None
    rows, errors = baseline.parse(text, today=date.today(), unit=args.unit)
    if errors:
        for e in errors:
            print(f"{args.file}:{e.line}: {e.message}")
        print("nothing imported")
        return 1

    async def go() -> int:
        conn = await _connect(settings)
        async with conn:
            names = await store.unit_names(conn)
            by_unit: dict[str, list] = {}
            for r in rows:
                by_unit.setdefault(r.unit, []).append(r)
            missing = [u for u in by_unit if u not in names]
            if missing:
                print(f"unknown unit(s): {', '.join(missing)}; nothing imported")
                return 1
            for unit, unit_rows in by_unit.items():
                iid = await store.save_baseline(
                    conn, unit, unit_rows, by=f"cli:{getpass.getuser()}", source=args.file.name
                )
                await _audit(conn, "change", "baseline import", unit, {"rows": len(unit_rows)})
                print(f"{unit}: {len(unit_rows)} rows imported (import {iid})")
        return 0

    return asyncio.run(go())


def run_synthesize(settings: Settings, args: argparse.Namespace) -> int:
    end = args.end or date.today() - timedelta(days=1)
    first = end - timedelta(days=args.nights - 1)
    units = synthetic.make_units(args.units, args.residents, seed=args.seed)

    async def go() -> int:
        conn = await _connect(settings)
        async with conn:
            data = list(
                synthetic.generate(units, first, args.nights, baseline_nights=args.baseline_nights,
                                   seed=args.seed)
            )  # fmt: skip
            loaded = await load(conn, data)
            n = await store.refresh(conn, settings.evaluation.refresh_lookback_h)
        if args.baseline_csv:
            args.baseline_csv.write_text(
                baseline.to_csv([r for d in data for r in d.baseline]), encoding="utf-8"
            )
        print(f"units: {', '.join(loaded.units)}; nights {first} – {end}")
        print(", ".join(f"{t} {n}" for t, n in loaded.rows.items()))
        print(f"summaries: {n} resident-nights")
        return 0

    return asyncio.run(go())
