"""`nattillsyn report`, `nattillsyn baseline-import` and `nattillsyn synthesize`.

Argument definitions only import argparse, so building the CLI parser stays cheap; the work
imports psycopg, NumPy and Jinja2 when a command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
from datetime import date, timedelta
from pathlib import Path

from nattillsyn.settings import Settings, SettingsError


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {value!r}") from None


def add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--unit", required=True, help="unit (site id) to report on")
    p.add_argument(
        "--from", dest="start", type=_date, required=True, help="first night, YYYY-MM-DD"
    )
    p.add_argument("--to", dest="end", type=_date, required=True, help="last night, YYYY-MM-DD")
    p.add_argument(
        "--out", type=Path, default=Path("report"), help="output folder (default ./report)"
    )
    p.add_argument(
        "--compare",
        default="all",
        help="units to compare with: 'all' (default), 'none', or a comma-separated list",
    )
    p.add_argument(
        "--format",
        default="html,csv,parquet",
        help="comma-separated: html, csv, parquet, json (default html,csv,parquet)",
    )
    p.add_argument("--baseline-from", type=_date, help="first baseline night to use")
    p.add_argument("--baseline-to", type=_date, help="last baseline night to use")
    p.add_argument("--minutes-per-visit", type=float, help="override the setting")
    p.add_argument("--awakening-min", type=float, help="override the awakening window (min)")
    p.add_argument("--k", type=int, help="override the k-anonymity threshold")
    p.add_argument(
        "--raw", action="store_true", help="compute from the raw tables (slow; for checking)"
    )


def add_baseline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", type=Path, help="CSV file in the documented format (docs/evaluation.md)")
    p.add_argument("--unit", help="refuse rows of any other unit")


def add_synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--units", type=int, default=2, help="number of synthetic units (default 2)")
    p.add_argument("--residents", type=int, default=16, help="residents per unit (default 16)")
    p.add_argument("--nights", type=int, default=120, help="nights of history (default 120)")
    p.add_argument(
        "--end", type=_date, help="last night (default: last night, i.e. yesterday's date)"
    )
    p.add_argument("--baseline-nights", type=int, default=28, help="baseline nights before")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--baseline-csv", type=Path, help="also write the baseline as a CSV file")


async def _connect(settings: Settings):
    import psycopg
    from psycopg import sql

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
    from . import render
    from .report import Request, build
    from .store import unit_names

    ev = settings.evaluation
    overrides = {
        k: v
        for k, v in (
            ("minutes_per_visit", args.minutes_per_visit),
            ("awakening_window_min", args.awakening_min),
            ("k_anonymity", args.k),
        )
        if v is not None
    }
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
            names = await unit_names(conn)
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
    from . import baseline, store

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
    from . import baseline, synthetic
    from .load import load
    from .store import refresh

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
            n = await refresh(conn, settings.evaluation.refresh_lookback_h)
        if args.baseline_csv:
            args.baseline_csv.write_text(
                baseline.to_csv([r for d in data for r in d.baseline]), encoding="utf-8"
            )
        print(f"units: {', '.join(loaded.units)}; nights {first} – {end}")
        print(", ".join(f"{t} {n}" for t, n in loaded.rows.items()))
        print(f"summaries: {n} resident-nights")
        return 0

    return asyncio.run(go())
