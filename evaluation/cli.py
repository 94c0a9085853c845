"""Arguments of `nattillsyn report`, `nattillsyn baseline-import` and `nattillsyn synthesize`.

Only argparse here, so every deployable's CLI (a room device has no psycopg or NumPy) can build
the parser; the commands themselves are in `commands.py`.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path


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
