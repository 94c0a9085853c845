"""The report maths: from per-resident totals to the figures evaluators see; pure.

Inputs are sums the database computed over the period (one `ResidentTotals` per resident,
one `AlertStats` per unit and per alert kind/priority, one `NightTotals` per night). Every ratio
is a ratio of sums (nights are weighted equally, not residents), with a cluster-bootstrap
interval; every figure passes the k-anonymity check before it leaves this module.
docs/evaluation.md defines each metric with a worked example; tests/test_evaluation_metrics.py
checks them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TypeVar

import numpy as np
from pydantic import BaseModel

from .model import (
    AlertCell,
    BeforeAfter,
    Estimate,
    NightRow,
    Params,
    ResidentNightRow,
    ResidentRow,
    Side,
    UnitDifference,
    UnitSummary,
)
from .privacy import Pseudonymizer, small, suppress_cells
from .stats import Bootstrap, Interval, ratio, safe_div
from .totals import NUMERIC, AlertStats, BaselineTotals, NightTotals, ResidentTotals

REASONS = ("round", "alert", "planned", "unplanned")
LATENCIES = (
    "ack_median_s",
    "ack_p90_s",
    "response_median_s",
    "response_p90_s",
    "resolve_median_s",
    "resolve_p90_s",
)

M = TypeVar("M", bound=BaseModel)


@dataclass
class Context:
    params: Params
    boot: Bootstrap
    notes: list[str] = field(default_factory=list)

    @property
    def k(self) -> int:
        return self.params.k_anonymity


def _columns(rows: Sequence[object], names: Sequence[str]) -> dict[str, np.ndarray]:
    return {n: np.array([getattr(r, n) for r in rows], dtype=float) for n in names}


def _est(iv: Interval) -> Estimate:
    return Estimate(value=iv.value, low=iv.low, high=iv.high)


HIDDEN = Estimate(suppressed=True)


def _row(model: type[M], totals: object, **derived: object) -> M:
    """`model` with the figures `totals` (a dataclass or a row) holds under the same names,
    and the `derived` ones."""
    have = totals if isinstance(totals, Mapping) else vars(totals)
    same = {n: have[n] for n in model.model_fields if n in have and n not in derived}
    return model(**same, **derived)


def _coverage(covered_s: float, scheduled_s: float, paused_s: float) -> float | None:
    """Share of scheduled, unpaused time with a healthy device."""
    return ratio(covered_s, scheduled_s - paused_s)


def staff_minutes(t: ResidentTotals | Sequence[ResidentTotals], minutes_per_visit: float) -> float:
    """Measured minutes of timed visits, plus minutes per visit for visits without an end."""
    rows = [t] if isinstance(t, ResidentTotals) else t
    return sum(r.visit_minutes + (r.visits - r.visits_timed) * minutes_per_visit for r in rows)


def unit_summary(
    site: str,
    name: str,
    residents: Sequence[ResidentTotals],
    alerts: AlertStats | None,
    ctx: Context,
) -> UnitSummary:
    """The figures of one unit; all withheld if fewer than k residents."""
    n = len(residents)
    if small(n, ctx.k):
        ctx.notes.append(
            f"{name}: fewer than {ctx.k} residents in the period; unit figures suppressed."
        )
        return UnitSummary(site=site, name=name, suppressed=True)
    cols = _columns(residents, NUMERIC)
    w = ctx.boot.weights(n)
    group = [(cols, w)]

    def est(stat: Callable[[dict], np.ndarray]) -> Estimate:
        return _est(ctx.boot.estimate(group, stat))

    def rate(num: str, den: str, scale: float = 1.0) -> Estimate:
        return est(lambda s: scale * safe_div(s[num], s[den]))

    def awake_diff(s: dict) -> np.ndarray:
        return safe_div(s["woken_physical"], s["checks_physical"]) - safe_div(
            s["woken_digital"], s["checks_digital"]
        )

    def excess(s: dict) -> np.ndarray:
        return s["woken_physical"] - s["checks_physical"] * safe_div(
            s["woken_digital"], s["checks_digital"]
        )

    tot = {k: float(v.sum()) for k, v in cols.items()}
    mpv = ctx.params.minutes_per_visit
    a = alerts or AlertStats(site=site)
    return UnitSummary(
        site=site,
        name=name,
        residents=n,
        resident_nights=int(tot["nights"]),
        rounds=int(tot["rounds"]),
        digital_ok=int(tot["digital_ok"]),
        physical_needed=int(tot["physical_needed"]),
        visits=int(tot["visits"]),
        visits_by_reason={r: int(tot[f"visits_{r}"]) for r in REASONS},
        visits_per_resident_night=rate("visits", "nights"),
        avoided_share=rate("digital_ok", "rounds"),
        staff_minutes_saved=tot["digital_ok"] * mpv,
        staff_minutes=staff_minutes(residents, mpv),
        checks_physical=int(tot["checks_physical"]),
        checks_digital=int(tot["checks_digital"]),
        awakening_rate_physical=rate("woken_physical", "checks_physical"),
        awakening_rate_digital=rate("woken_digital", "checks_digital"),
        awakening_difference=est(awake_diff),
        staff_caused_awakenings=est(excess),
        alerts=a.alerts,
        alerts_per_100_nights=rate("alerts", "nights", 100.0),
        false_alarm_share=rate("false_alarms", "alerts_with_outcome"),
        alerts_without_outcome=a.alerts - a.with_outcome,
        **{n: getattr(a, n) for n in LATENCIES},
        coverage=est(lambda s: safe_div(s["covered_s"], s["scheduled_s"] - s["paused_s"])),
        paused_nights=int(tot["paused_nights"]),
        paused_share=ratio(tot["paused_nights"], tot["nights"]),
    )


def alert_cells(cells: Sequence[AlertStats], ctx: Context) -> list[AlertCell]:
    """Alerts by kind and priority; cells with fewer than k residents suppressed."""
    cells = sorted(cells, key=lambda c: (-c.alerts, c.kind or "", c.priority or ""))
    hidden = suppress_cells(cells, lambda c: c.residents, ctx.k)
    out = []
    for c, h in zip(cells, hidden, strict=True):
        if h:
            out.append(AlertCell(kind=c.kind or "", priority=c.priority or "", suppressed=True))
            continue
        out.append(
            _row(
                AlertCell,
                c,
                kind=c.kind or "",
                priority=c.priority or "",
                false_alarm_share=ratio(c.false_alarms, c.with_outcome),
            )
        )
    if any(hidden):
        ctx.notes.append(
            f"{sum(hidden)} alert kind/priority cell(s) with fewer than {ctx.k} residents suppressed."
        )
    return out


def night_rows(nights: Sequence[NightTotals], ctx: Context) -> list[NightRow]:
    out = []
    hidden = 0
    for t in sorted(nights, key=lambda t: t.night):
        if small(t.residents, ctx.k):
            hidden += 1
            out.append(NightRow(night=t.night, suppressed=True))
            continue
        out.append(_row(NightRow, t, coverage=_coverage(t.covered_s, t.scheduled_s, t.paused_s)))
    if hidden:
        ctx.notes.append(f"{hidden} night(s) with fewer than {ctx.k} residents suppressed.")
    return out


def resident_rows(
    residents: Sequence[ResidentTotals], ctx: Context, pseudonym: Pseudonymizer
) -> list[ResidentRow] | None:
    """Per resident under this export's pseudonyms; withheld if the unit has fewer than k."""
    if small(len(residents), ctx.k):
        ctx.notes.append(f"Per-resident figures withheld: fewer than {ctx.k} residents.")
        return None
    rows = [
        _row(
            ResidentRow,
            r,
            pseudonym=pseudonym(r.resident_id),
            visits_per_night=ratio(r.visits, r.nights),
            avoided_share=ratio(r.digital_ok, r.rounds),
            woken_after_physical=r.woken_physical,
            woken_after_digital=r.woken_digital,
            coverage=_coverage(r.covered_s, r.scheduled_s, r.paused_s),
        )
        for r in residents
    ]
    return sorted(rows, key=lambda r: r.pseudonym)  # order must not follow ids or names


def before_after(
    baseline: Sequence[BaselineTotals],
    after: Sequence[ResidentTotals],
    ctx: Context,
    before_period: tuple[date | None, date | None],
    after_period: tuple[date, date],
) -> BeforeAfter:
    """Visits and minutes per resident-night, before (baseline) against after (measured)."""
    mpv = ctx.params.minutes_per_visit
    b_cols = {
        "nights": np.array([b.nights for b in baseline], dtype=float),
        "visits": np.array([b.visits for b in baseline], dtype=float),
        "minutes": np.array(
            [b.minutes_known + b.visits_without_minutes * mpv for b in baseline], dtype=float
        ),
    }
    a_cols = {
        "nights": np.array([a.nights for a in after], dtype=float),
        "visits": np.array([a.visits for a in after], dtype=float),
        "minutes": np.array([staff_minutes(a, mpv) for a in after], dtype=float),
    }
    b_hidden, a_hidden = small(len(baseline), ctx.k), small(len(after), ctx.k)
    b_group = (b_cols, ctx.boot.weights(len(baseline)))
    a_group = (a_cols, ctx.boot.weights(len(after)))

    def side(label: str, cols: dict, group: tuple, hidden: bool, period: tuple) -> Side:
        if hidden:
            return Side(label=label, start=period[0], end=period[1], suppressed=True)
        return Side(
            label=label,
            start=period[0],
            end=period[1],
            residents=len(cols["nights"]),
            resident_nights=int(cols["nights"].sum()),
            visits_per_resident_night=_est(
                ctx.boot.estimate([group], lambda s: safe_div(s["visits"], s["nights"]))
            ),
            minutes_per_resident_night=_est(
                ctx.boot.estimate([group], lambda s: safe_div(s["minutes"], s["nights"]))
            ),
        )

    out = BeforeAfter(
        before=side("before", b_cols, b_group, b_hidden, before_period),
        after=side("after", a_cols, a_group, a_hidden, after_period),
    )
    if b_hidden or a_hidden:
        ctx.notes.append(f"Before/after comparison needs at least {ctx.k} residents on each side.")
        out.visits_difference = out.visits_change = out.minutes_difference = HIDDEN
        return out

    def per_night(col: str) -> Callable[[dict, dict], np.ndarray]:
        return lambda b, a: safe_div(a[col], a["nights"]) - safe_div(b[col], b["nights"])

    groups = [b_group, a_group]
    out.visits_difference = _est(ctx.boot.estimate(groups, per_night("visits")))
    out.minutes_difference = _est(ctx.boot.estimate(groups, per_night("minutes")))
    out.visits_change = _est(
        ctx.boot.estimate(
            groups,
            lambda b, a: (
                safe_div(safe_div(a["visits"], a["nights"]), safe_div(b["visits"], b["nights"]))
                - 1.0
            ),
        )
    )
    return out


def unit_difference(
    site: str,
    name: str,
    focal: Sequence[ResidentTotals],
    other: Sequence[ResidentTotals],
    ctx: Context,
) -> UnitDifference:
    """Focal unit minus another, each rate a ratio of sums, both units resampled."""
    if small(len(focal), ctx.k) or small(len(other), ctx.k):
        return UnitDifference(site=site, name=name, suppressed=True)
    groups = [
        (_columns(focal, NUMERIC), ctx.boot.weights(len(focal))),
        (_columns(other, NUMERIC), ctx.boot.weights(len(other))),
    ]

    def diff(num: str, den: str, minus: str | None = None) -> Estimate:
        def stat(a: dict, b: dict) -> np.ndarray:
            da = a[den] - a[minus] if minus else a[den]
            db = b[den] - b[minus] if minus else b[den]
            return safe_div(a[num], da) - safe_div(b[num], db)

        return _est(ctx.boot.estimate(groups, stat))

    return UnitDifference(
        site=site,
        name=name,
        visits_per_resident_night=diff("visits", "nights"),
        avoided_share=diff("digital_ok", "rounds"),
        awakening_rate_physical=diff("woken_physical", "checks_physical"),
        false_alarm_share=diff("false_alarms", "alerts_with_outcome"),
        coverage=diff("covered_s", "scheduled_s", "paused_s"),
    )


def resident_night_rows(
    rows: Sequence[dict], n_residents: int, ctx: Context, pseudonym: Pseudonymizer
) -> list[ResidentNightRow] | None:
    """Per resident-night microdata under this export's pseudonyms; withheld below k."""
    if small(n_residents, ctx.k):
        return None
    out = [
        _row(
            ResidentNightRow,
            r,
            pseudonym=pseudonym(r["resident_id"]),
            coverage=_coverage(r["covered_s"], r["scheduled_s"], r["paused_s"]),
            paused=r["paused_s"] > 0,
        )
        for r in rows
    ]
    return sorted(out, key=lambda r: (r.pseudonym, r.night))
