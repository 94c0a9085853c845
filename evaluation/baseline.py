"""The baseline file: night visits per resident and night before digital tillsyn; pure.

Format (docs/evaluation.md has the full description and an example):

    unit,resident,night,planned_visits,unplanned_visits,minutes
    solgarden,B-017,2024-03-04,3,1,14

- UTF-8 (a BOM is fine), one header row, comma- or semicolon-separated (a Swedish spreadsheet
  saves semicolons, and then `12,5` is read as a decimal number); column order is free.
- `resident` is the unit's own pseudonymous code (letters, digits, `-`, `_`, `.`), never a
  name or personal identity number: values that look like a personnummer are refused.
- `night` is the local date the night starts on (the night of 4 March runs into 5 March).
- `minutes` (optional column, may be empty) is the staff time those visits took.
- A file is stored whole or not at all: every error is reported with its line.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date

from .model import BaselineError

COLUMNS = ("unit", "resident", "night", "planned_visits", "unplanned_visits", "minutes")
REQUIRED = COLUMNS[:5]
MAX_ERRORS = 100
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_PNR = re.compile(r"^(\d{2})?\d{6}[-+]?\d{4}$")  # personnummer / samordningsnummer shape


@dataclass(frozen=True)
class BaselineRow:
    unit: str
    resident: str
    night: date
    planned_visits: int
    unplanned_visits: int
    minutes: float | None


def _int(value: str, name: str, hi: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if not 0 <= n <= hi:
        raise ValueError(f"{name} must be between 0 and {hi}, got {n}")
    return n


def parse(
    text: str, *, today: date, unit: str | None = None
) -> tuple[list[BaselineRow], list[BaselineError]]:
    """Rows and errors; with `unit` given, every row must be of that unit."""
    text = text.lstrip("\ufeff")
    first = text.split("\n", 1)[0]
    sep = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    errors: list[BaselineError] = []
    rows: list[BaselineRow] = []
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return [], [BaselineError(line=1, message="empty file: expected a header row")]
    missing = [c for c in REQUIRED if c not in header]
    unknown = [h for h in header if h not in COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        parts = []
        if missing:
            parts.append("missing column(s): " + ", ".join(missing))
        if unknown:
            parts.append("unknown column(s): " + ", ".join(unknown))
        if len(set(header)) != len(header):
            parts.append("a column appears twice")
        return [], [
            BaselineError(line=1, message="; ".join(parts) + f" (expected {','.join(COLUMNS)})")
        ]
    idx = {c: header.index(c) for c in header}
    seen: dict[tuple[str, str, date], int] = {}
    for line_no, raw in enumerate(reader, start=2):
        if not raw or all(not c.strip() for c in raw):
            continue
        if len(errors) >= MAX_ERRORS:
            errors.append(BaselineError(line=line_no, message="too many errors; stopped reading"))
            break
        if len(raw) != len(header):
            errors.append(
                BaselineError(
                    line=line_no, message=f"expected {len(header)} fields, found {len(raw)}"
                )
            )
            continue
        f = {c: raw[i].strip() for c, i in idx.items()}
        try:
            if not f["unit"]:
                raise ValueError("unit is empty")
            if unit is not None and f["unit"] != unit:
                raise ValueError(f"unit {f['unit']!r} is not the unit imported into ({unit!r})")
            ref = f["resident"]
            if _PNR.match(ref.replace(" ", "")):
                raise ValueError(
                    "resident looks like a personal identity number; use the unit's pseudonymous code"
                )
            if not _REF.match(ref):
                raise ValueError(
                    f"resident must be a code of letters, digits, '-', '_' or '.', got {ref!r}"
                )
            try:
                night = date.fromisoformat(f["night"])
            except ValueError:
                raise ValueError(f"night must be a date YYYY-MM-DD, got {f['night']!r}") from None
            if night > today:
                raise ValueError(f"night {night} is in the future")
            planned = _int(f["planned_visits"], "planned_visits", 48)
            unplanned = _int(f["unplanned_visits"], "unplanned_visits", 48)
            minutes = None
            m = f.get("minutes", "")
            if m:
                try:
                    minutes = float(m.replace(",", ".") if sep == ";" else m)
                except ValueError:
                    raise ValueError(f"minutes must be a number, got {m!r}") from None
                if not 0 <= minutes <= 1440:
                    raise ValueError(f"minutes must be between 0 and 1440, got {minutes:g}")
            key = (f["unit"], ref, night)
            if key in seen:
                raise ValueError(f"same unit, resident and night as line {seen[key]}")
            seen[key] = line_no
            rows.append(BaselineRow(f["unit"], ref, night, planned, unplanned, minutes))
        except ValueError as exc:
            errors.append(BaselineError(line=line_no, message=str(exc)))
    if not rows and not errors:
        errors.append(BaselineError(line=1, message="no rows after the header"))
    return rows, errors


def to_csv(rows: list[BaselineRow]) -> str:
    """The documented format (used by the synthetic generator and for round trips)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow(
            [
                r.unit,
                r.resident,
                r.night.isoformat(),
                r.planned_visits,
                r.unplanned_visits,
                "" if r.minutes is None else f"{r.minutes:g}",
            ]
        )
    return out.getvalue()
