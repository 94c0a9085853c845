"""Build a report: read the period's totals, compute the figures, suppress and pseudonymise."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from psycopg import AsyncConnection

from nattillsyn.settings.evaluation import EvaluationSettings

from . import metrics, store
from .metrics import Context
from .model import Params, Report
from .privacy import Pseudonymizer
from .stats import Bootstrap
from .totals import BaselineTotals


@dataclass(frozen=True)
class Request:
    site: str
    start: date
    end: date
    compare: tuple[str, ...] = ()  # other units to set beside it (those the reader may see)
    baseline_start: date | None = None
    baseline_end: date | None = None


def params_of(s: EvaluationSettings) -> Params:
    return Params(
        minutes_per_visit=s.minutes_per_visit,
        awakening_window_min=s.awakening_window_min,
        k_anonymity=s.k_anonymity,
        bootstrap_samples=s.bootstrap_samples,
        confidence=s.confidence,
    )


def compose(
    req: Request,
    names: dict[str, str],
    totals: store.Totals,
    baseline: tuple[list[BaselineTotals], date | None, date | None],
    settings: EvaluationSettings,
    *,
    source: store.Source = "summary",
    pseudonym: Pseudonymizer | None = None,
    now: datetime | None = None,
    resident_nights: list[dict] | None = None,
) -> Report:
    """The report from totals already read; pure."""
    ctx = Context(params_of(settings), Bootstrap(
        settings.bootstrap_samples, settings.confidence, settings.bootstrap_seed
    ))  # fmt: skip
    pseudonym = pseudonym or Pseudonymizer()
    site = req.site
    name = names.get(site, site)
    summary = metrics.unit_summary(
        site, name, totals.residents.get(site, []), totals.alert_units.get(site), ctx
    )
    units = [summary]
    for other in req.compare:
        if other != site:
            units.append(
                metrics.unit_summary(
                    other, names.get(other, other), totals.residents.get(other, []),
                    totals.alert_units.get(other), metrics.Context(ctx.params, ctx.boot, []),
                )
            )  # fmt: skip
    focal = totals.residents.get(site, [])
    differences = [
        metrics.unit_difference(
            other, names.get(other, other), focal, totals.residents.get(other, []), ctx
        )
        for other in req.compare
        if other != site
    ]
    before_after = None
    base, b_first, b_last = baseline
    if base:
        before_after = metrics.before_after(
            base,
            totals.residents.get(site, []),
            ctx,
            (req.baseline_start or b_first, req.baseline_end or b_last),
            (req.start, req.end),
        )
    microdata = None
    if summary.suppressed:
        cells, nights, residents = [], [], None
    else:
        cells = metrics.alert_cells(totals.alert_cells.get(site, []), ctx)
        nights = metrics.night_rows(totals.nights.get(site, []), ctx)
        consented = [r for r in focal if r.resident_id in totals.consented]
        if len(consented) < len(focal):
            ctx.notes.append(
                f"{len(focal) - len(consented)} resident(s) without consent to pseudonymised "
                "evaluation are left out of the per-resident tables (they count in every "
                "aggregate, which identifies no one)."
            )
        residents = metrics.resident_rows(consented, ctx, pseudonym)
        if resident_nights is not None:
            ids = {r.resident_id for r in consented}
            microdata = metrics.resident_night_rows(
                [r for r in resident_nights if r["resident_id"] in ids], len(ids), ctx, pseudonym
            )
    hidden_units = [u.name for u in units[1:] if u.suppressed]
    if hidden_units:
        ctx.notes.append(
            f"Fewer than {ctx.k} residents, figures suppressed: " + ", ".join(hidden_units) + "."
        )
    return Report(
        generated_at=now or datetime.now(UTC),
        site=site,
        name=name,
        start=req.start,
        end=req.end,
        source=source,
        params=ctx.params,
        summary=summary,
        units=units,
        differences=differences,
        before_after=before_after,
        alerts=cells,
        nights=nights,
        residents=residents,
        resident_nights=microdata,
        notes=ctx.notes,
    )


async def build(
    conn: AsyncConnection,
    req: Request,
    settings: EvaluationSettings,
    *,
    source: store.Source = "summary",
    refresh: bool = True,
    pseudonym: Pseudonymizer | None = None,
    microdata: bool = False,
) -> Report:
    """Read and compose a report; `microdata` adds the per resident-night rows (exports)."""
    if refresh and source == "summary":
        await store.refresh(conn, settings.refresh_lookback_h)
    sites: Sequence[str] = [req.site, *[s for s in req.compare if s != req.site]]
    names = await store.unit_names(conn, sites)
    totals = await store.fetch(
        conn,
        sites,
        req.start,
        req.end,
        awakening_window_min=settings.awakening_window_min,
        source=source,
    )
    baseline = await store.baseline_totals(conn, req.site, req.baseline_start, req.baseline_end)
    rn = (
        await store.resident_nights(conn, req.site, req.start, req.end, source)
        if microdata
        else None
    )
    return compose(
        req, names, totals, baseline, settings, source=source, pseudonym=pseudonym,
        resident_nights=rn,
    )  # fmt: skip
