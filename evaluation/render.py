"""Render a report: a self-contained HTML page with matplotlib plots and tables (Swedish first,
English second), and the same figures as CSV and Parquet tables for further analysis.

Everything rendered comes from the `Report` model, which is already suppressed and
pseudonymised: nothing here reads the database.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path

from .model import Estimate, NightRow, Report, UnitSummary

# Labels: (Swedish, English).
L = {
    "title": ("Utvärdering av digital nattillsyn", "Evaluation of digital night supervision"),
    "period": ("Period", "Period"),
    "key": ("Nyckeltal", "Key figures"),
    "visits_prn": ("Fysiska besök per boendenatt", "Physical visits per resident-night"),
    "avoided": ("Andel tillsyner klarade digitalt", "Share of rounds settled digitally"),
    "saved": ("Sparade personalminuter", "Staff minutes saved"),
    "staff_min": ("Personalminuter på fysiska besök", "Staff minutes on physical visits"),
    "wake_p": ("Väckningar efter fysisk tillsyn", "Awakenings after a physical check"),
    "wake_d": ("Aktivitet efter digital tillsyn", "Activity after a digital check"),
    "wake_diff": ("Skillnad (fysisk − digital)", "Difference (physical − digital)"),
    "wake_excess": ("Personalorsakade väckningar", "Staff-caused awakenings"),
    "alerts_100": ("Larm per 100 boendenätter", "Alerts per 100 resident-nights"),
    "false": ("Andel falsklarm", "False-alarm share"),
    "ack": ("Kvitteringstid median / p90", "Acknowledgement time median / p90"),
    "resp": ("Tid till personal i rummet median / p90", "Time to staff in the room median / p90"),
    "coverage": ("Sensortäckning", "Sensor coverage"),
    "paused": ("Pausade boendenätter", "Paused resident-nights"),
    "residents": ("Boende", "Residents"),
    "nights": ("Boendenätter", "Resident-nights"),
    "before_after": ("Före och efter införandet", "Before and after introduction"),
    "units": ("Jämförelse mellan enheter", "Comparison between units"),
    "alerts": ("Larm per typ och prioritet", "Alerts by type and priority"),
    "per_night": ("Per natt", "Per night"),
    "per_resident": ("Per boende (pseudonymer för denna export)", "Per resident (pseudonyms for this export)"),
    "notes": ("Sekretess och anmärkningar", "Confidentiality and notes"),
    "method": ("Metod", "Method"),
    "suppressed": ("dold (< k boende)", "suppressed (< k residents)"),
}  # fmt: skip


def label(key: str) -> str:
    sv, en = L[key]
    return f"{sv} <span class=en>/ {en}</span>"


def plain(key: str) -> str:
    sv, en = L[key]
    return f"{sv} / {en}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _num(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "–"
    return f"{x:,.{digits}f}".replace(",", " ")


def _secs(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.0f} s" if x < 120 else f"{x / 60:.1f} min"


def _est(e: Estimate, fmt=_num) -> str:
    if e.suppressed:
        return f"<i>{html.escape(plain('suppressed'))}</i>"
    if e.value is None:
        return "–"
    ci = "" if e.low is None else f" <small>({fmt(e.low)} – {fmt(e.high)})</small>"
    return f"{fmt(e.value)}{ci}"


# --- plots --------------------------------------------------------------------------------


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _figure().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _weekly(nights: list[NightRow]) -> list[tuple[date, dict[str, float]]]:
    """Sums per week (Monday) over the nights that are shown."""
    weeks: dict[date, dict[str, float]] = {}
    for n in nights:
        if n.suppressed:
            continue
        wk = n.night - timedelta(days=n.night.weekday())
        w = weeks.setdefault(wk, {"residents": 0, "visits": 0, "digital_ok": 0, "rounds": 0,
                                   "alerts": 0, "cov_n": 0, "cov": 0.0})  # fmt: skip
        w["residents"] += n.residents or 0
        w["visits"] += n.visits or 0
        w["digital_ok"] += n.digital_ok or 0
        w["rounds"] += n.rounds or 0
        w["alerts"] += n.alerts or 0
        if n.coverage is not None:
            w["cov"] += n.coverage
            w["cov_n"] += 1
    return sorted(weeks.items())


def plot_trend(report: Report) -> str | None:
    weeks = _weekly(report.nights)
    if not weeks:
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(8, 3.4))
    xs = [w for w, _ in weeks]
    visits = [v["visits"] / v["residents"] if v["residents"] else None for _, v in weeks]
    avoided = [v["digital_ok"] / v["residents"] if v["residents"] else None for _, v in weeks]
    ax.plot(xs, visits, marker="o", ms=3, label="Fysiska besök / physical visits")
    ax.plot(xs, avoided, marker="o", ms=3, label="Undvikna (digitala) / avoided (digital)")
    ba = report.before_after
    if ba and not ba.before.suppressed and ba.before.visits_per_resident_night.value is not None:
        e = ba.before.visits_per_resident_night
        ax.axhline(e.value, color="grey", ls="--", lw=1, label="Före införandet / baseline")
        if e.low is not None:
            ax.axhspan(e.low, e.high, color="grey", alpha=0.12)
    ax.set_ylabel("per boendenatt / per resident-night")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("Per vecka / per week", fontsize=10)
    fig.autofmt_xdate()
    return _png(fig)


def _bars(ax, labels: list[str], ests: list[Estimate], scale: float = 1.0, color=None) -> None:
    vals = [(e.value or 0) * scale for e in ests]
    lo = [max(0.0, (e.value - e.low) * scale) if e.low is not None else 0 for e in ests]
    hi = [max(0.0, (e.high - e.value) * scale) if e.high is not None else 0 for e in ests]
    ax.bar(labels, vals, yerr=[lo, hi], capsize=4, color=color)


def plot_before_after(report: Report) -> str | None:
    ba = report.before_after
    if ba is None or ba.before.suppressed or ba.after.suppressed:
        return None
    plt = _figure()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.2))
    names = ["Före / before", "Efter / after"]
    _bars(a1, names, [ba.before.visits_per_resident_night, ba.after.visits_per_resident_night],
          color=["#999", "#2a7"])  # fmt: skip
    a1.set_title("Fysiska besök per boendenatt\nphysical visits per resident-night", fontsize=9)
    _bars(a2, names, [ba.before.minutes_per_resident_night, ba.after.minutes_per_resident_night],
          color=["#999", "#2a7"])  # fmt: skip
    a2.set_title("Personalminuter per boendenatt\nstaff minutes per resident-night", fontsize=9)
    return _png(fig)


def plot_awakenings(report: Report) -> str | None:
    s = report.summary
    if s.suppressed or s.awakening_rate_physical.value is None:
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    _bars(ax, ["Efter fysisk\nafter physical", "Efter digital\nafter digital"],
          [s.awakening_rate_physical, s.awakening_rate_digital], 100, ["#c63", "#2a7"])  # fmt: skip
    ax.set_ylabel("% av tillsyner / % of checks")
    ax.set_title(
        f"Aktivitet inom {report.params.awakening_window_min:g} min\n"
        f"activity within {report.params.awakening_window_min:g} min",
        fontsize=9,
    )
    return _png(fig)


def plot_units(report: Report) -> str | None:
    units = [u for u in report.units if not u.suppressed]
    if len(units) < 2:
        return None
    plt = _figure()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 0.45 * len(units) + 1.4), sharey=True)
    names = [u.name for u in units]
    for ax, key, title, scale in (
        (a1, "visits_per_resident_night", "Besök per boendenatt\nvisits per resident-night", 1),
        (a2, "avoided_share", "Andel digitalt (%)\nshare digital (%)", 100),
    ):
        ests = [getattr(u, key) for u in units]
        vals = [(e.value or 0) * scale for e in ests]
        err = [
            [max(0.0, (e.value - e.low) * scale) if e.low is not None else 0 for e in ests],
            [max(0.0, (e.high - e.value) * scale) if e.high is not None else 0 for e in ests],
        ]
        colors = ["#2a7" if u.site == report.site else "#69c" for u in units]
        ax.errorbar(vals, range(len(units)), xerr=err, fmt="none", ecolor="#444", capsize=3)
        ax.scatter(vals, range(len(units)), color=colors, zorder=3)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    a1.set_yticks(range(len(units)), names, fontsize=8)
    a1.invert_yaxis()
    return _png(fig)


def plot_alerts(report: Report) -> str | None:
    cells = [c for c in report.alerts if not c.suppressed and c.alerts]
    if not cells:
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(cells) + 1.2))
    names = [f"{c.kind} ({c.priority})" for c in cells]
    false = [c.false_alarms or 0 for c in cells]
    other = [(c.alerts or 0) - f for c, f in zip(cells, false, strict=True)]
    ax.barh(names, other, color="#69c", label="Ej falsklarm / not false")
    ax.barh(names, false, left=other, color="#c63", label="Falsklarm / false alarm")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    ax.set_xlabel("larm / alerts")
    return _png(fig)


# --- HTML ---------------------------------------------------------------------------------

CSS = """
body{font:15px/1.45 system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#123}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ccd;font-size:1.2em}
.en{color:#567;font-weight:normal}table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ccd;padding:.25em .5em;text-align:right}th{background:#eef2f6}
td:first-child,th:first-child{text-align:left}small{color:#567}img{max-width:100%}
.note{background:#fff8e0;border-left:4px solid #e0b000;padding:.4em .8em;margin:.3em 0}
"""


def _table(headers: list[str], rows: Iterable[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(png: str | None, alt: str) -> str:
    return (
        ""
        if png is None
        else f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{png}"></p>'
    )


def _key_rows(s: UnitSummary) -> list[list[str]]:
    if s.suppressed:
        return [[label("residents"), f"<i>{plain('suppressed')}</i>"]]
    return [
        [label("residents"), str(s.residents)],
        [label("nights"), str(s.resident_nights)],
        [label("visits_prn"), _est(s.visits_per_resident_night)],
        [label("avoided"), _est(s.avoided_share, _pct)],
        [label("saved"), _num(s.staff_minutes_saved, 0)],
        [label("staff_min"), _num(s.staff_minutes, 0)],
        [label("wake_p"), _est(s.awakening_rate_physical, _pct)],
        [label("wake_d"), _est(s.awakening_rate_digital, _pct)],
        [label("wake_diff"), _est(s.awakening_difference, _pct)],
        [label("wake_excess"), _est(s.staff_caused_awakenings, lambda x: _num(x, 0))],
        [label("alerts_100"), _est(s.alerts_per_100_nights, lambda x: _num(x, 1))],
        [label("false"), _est(s.false_alarm_share, _pct)],
        [label("ack"), f"{_secs(s.ack_median_s)} / {_secs(s.ack_p90_s)}"],
        [label("resp"), f"{_secs(s.response_median_s)} / {_secs(s.response_p90_s)}"],
        [label("coverage"), _est(s.coverage, _pct)],
        [label("paused"), f"{s.paused_nights} ({_pct(s.paused_share)})"],
    ]


def to_html(report: Report) -> str:
    s = report.summary
    p = report.params
    parts = [
        "<!doctype html><html lang=sv><head><meta charset=utf-8>",
        f"<title>{html.escape(plain('title'))} – {html.escape(report.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{label('title')}</h1>",
        f"<p><b>{html.escape(report.name)}</b> · {label('period')}: {report.start} – {report.end}"
        f" · <small>{report.generated_at:%Y-%m-%d %H:%M} UTC</small></p>",
        f"<h2>{label('key')}</h2>",
        "<p><small>Värden med 95 % konfidensintervall (bootstrap över boende) / values with "
        f"{p.confidence:.0%} confidence intervals (bootstrap over residents).</small></p>",
        _table(["", ""], _key_rows(s)),
        _img(plot_trend(report), "trend"),
    ]
    ba = report.before_after
    if ba is not None:
        parts.append(f"<h2>{label('before_after')}</h2>")
        rows = []
        for side in (ba.before, ba.after):
            period = f"{side.start or '?'} – {side.end or '?'}"
            if side.suppressed:
                rows.append([side.label, period, f"<i>{plain('suppressed')}</i>", "", "", ""])
            else:
                rows.append([
                    "Före / before" if side.label == "before" else "Efter / after", period,
                    str(side.residents), str(side.resident_nights),
                    _est(side.visits_per_resident_night), _est(side.minutes_per_resident_night),
                ])  # fmt: skip
        parts.append(
            _table(
                ["", label("period"), label("residents"), label("nights"), label("visits_prn"),
                 "Minuter per boendenatt <span class=en>/ minutes per resident-night</span>"],
                rows,
            )
        )  # fmt: skip
        parts.append(
            _table(
                ["", ""],
                [
                    ["Skillnad i besök <span class=en>/ difference in visits</span>",
                     _est(ba.visits_difference)],
                    ["Relativ förändring <span class=en>/ relative change</span>",
                     _est(ba.visits_change, _pct)],
                    ["Skillnad i minuter <span class=en>/ difference in minutes</span>",
                     _est(ba.minutes_difference)],
                ],
            )
        )  # fmt: skip
        parts.append(_img(plot_before_after(report), "before/after"))
    parts.append(
        f"<h2>{label('wake_p')} <span class=en>·</span> {label('wake_d')}</h2>"
        + _img(plot_awakenings(report), "awakenings")
    )
    if len(report.units) > 1:
        parts.append(f"<h2>{label('units')}</h2>")
        parts.append(
            _table(
                ["Enhet <span class=en>/ unit</span>", label("residents"), label("visits_prn"),
                 label("avoided"), label("wake_p"),
                 label("false"), label("coverage")],
                [
                    [html.escape(u.name), str(u.residents) if not u.suppressed else "–",
                     _est(u.visits_per_resident_night), _est(u.avoided_share, _pct),
                     _est(u.awakening_rate_physical, _pct), _est(u.false_alarm_share, _pct),
                     _est(u.coverage, _pct)]
                    if not u.suppressed
                    else [html.escape(u.name), f"<i>{plain('suppressed')}</i>", "", "", "", "", ""]
                    for u in report.units
                ],
            )
        )  # fmt: skip
        parts.append(_img(plot_units(report), "units"))
        if report.differences:
            parts.append(
                "<p>Skillnad mot andra enheter (denna minus den andra) <span class=en>/ "
                "difference from other units (this minus the other)</span></p>"
            )
            parts.append(
                _table(
                    ["Enhet <span class=en>/ unit</span>", label("visits_prn"), label("avoided"),
                     label("wake_p"), label("false"), label("coverage")],
                    [
                        [html.escape(d.name), f"<i>{plain('suppressed')}</i>", "", "", "", ""]
                        if d.suppressed
                        else [html.escape(d.name), _est(d.visits_per_resident_night),
                              _est(d.avoided_share, _pct), _est(d.awakening_rate_physical, _pct),
                              _est(d.false_alarm_share, _pct), _est(d.coverage, _pct)]
                        for d in report.differences
                    ],
                )
            )  # fmt: skip
    if report.alerts:
        parts.append(f"<h2>{label('alerts')}</h2>")
        parts.append(
            _table(
                ["Typ <span class=en>/ kind</span>", "Prioritet <span class=en>/ priority</span>",
                 "Larm <span class=en>/ alerts</span>", label("false"), label("ack"), label("resp")],
                [
                    [html.escape(c.kind), c.priority, f"<i>{plain('suppressed')}</i>", "", "", ""]
                    if c.suppressed
                    else [html.escape(c.kind), c.priority, str(c.alerts),
                          _pct(c.false_alarm_share),
                          f"{_secs(c.ack_median_s)} / {_secs(c.ack_p90_s)}",
                          f"{_secs(c.response_median_s)} / {_secs(c.response_p90_s)}"]
                    for c in report.alerts
                ],
            )
        )  # fmt: skip
        parts.append(_img(plot_alerts(report), "alerts"))
    if report.residents:
        parts.append(f"<h2>{label('per_resident')}</h2>")
        parts.append(
            _table(
                ["Pseudonym", label("nights"), "Besök/natt <span class=en>/ visits/night</span>",
                 label("avoided"), label("wake_p"), label("wake_d"), "Larm <span class=en>/ alerts</span>",
                 label("coverage")],
                [
                    [r.pseudonym, str(r.nights), _num(r.visits_per_night),
                     _pct(r.avoided_share), f"{r.woken_after_physical}/{r.checks_physical}",
                     f"{r.woken_after_digital}/{r.checks_digital}", str(r.alerts),
                     _pct(r.coverage)]
                    for r in report.residents
                ],
            )
        )  # fmt: skip
    parts.append(f"<h2>{label('notes')}</h2>")
    parts.append(
        f"<p>k = {p.k_anonymity}: uppgifter bakom färre än k boende visas inte; pseudonymer gäller "
        "bara denna export. <span class=en>Figures behind fewer than k residents are not shown; "
        "pseudonyms are valid in this export only.</span></p>"
    )
    parts.extend(f"<p class=note>{html.escape(n)}</p>" for n in report.notes)
    parts.append(f"<h2>{label('method')}</h2>")
    parts.append(
        "<p><small>"
        f"Minuter per besök / minutes per visit: {p.minutes_per_visit:g}. "
        f"Väckning / awakening: aktivitet inom {p.awakening_window_min:g} min efter en tillsyn av "
        "en vilande boende / activity within that window after a check of a resting resident. "
        f"Bootstrap: {p.bootstrap_samples} omdragningar av boende / resamples of residents. "
        "Övningslarm och övningstillsyner ingår inte / practice alerts and rounds are excluded. "
        "Definitioner / definitions: docs/evaluation.md."
        "</small></p></body></html>"
    )
    return "\n".join(parts)


# --- tables -------------------------------------------------------------------------------


def _flat(prefix: str, value: object, out: dict) -> None:
    if isinstance(value, dict) and set(value) >= {"value", "low", "high", "suppressed"}:
        out[prefix] = value["value"]
        out[prefix + "_low"] = value["low"]
        out[prefix + "_high"] = value["high"]
    elif isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}_{k}", v, out)
    else:
        out[prefix] = value


def tables(report: Report) -> dict[str, list[dict]]:
    """The report as flat tables (one dict per row)."""

    def flat(model) -> dict:
        out: dict = {}
        for k, v in model.model_dump(mode="json").items():
            _flat(k, v, out)
        return out

    out = {
        "units": [flat(u) for u in report.units],
        "alerts": [flat(c) for c in report.alerts],
        "nights": [flat(n) for n in report.nights],
    }
    if report.residents is not None:
        out["residents"] = [flat(r) for r in report.residents]
    if report.resident_nights is not None:
        out["resident_nights"] = [flat(r) for r in report.resident_nights]
    if report.differences:
        out["differences"] = [flat(d) for d in report.differences]
    if report.before_after is not None:
        ba = report.before_after
        row = {}
        for side in (ba.before, ba.after):
            for k, v in side.model_dump(mode="json").items():
                if k != "label":
                    _flat(f"{side.label}_{k}", v, row)
        for k in ("visits_difference", "visits_change", "minutes_difference"):
            _flat(k, getattr(ba, k).model_dump(mode="json"), row)
        out["before_after"] = [row]
    return out


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def to_parquet(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def write(
    report: Report, out_dir: Path, formats: Iterable[str] = ("html", "csv", "parquet")
) -> list[Path]:
    """Write the report files; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    formats = set(formats)
    written = []
    if "html" in formats:
        p = out_dir / "report.html"
        p.write_text(to_html(report), encoding="utf-8")
        written.append(p)
    if "json" in formats:
        p = out_dir / "report.json"
        p.write_text(report.model_dump_json(indent=2), encoding="utf-8")
        written.append(p)
    for name, rows in tables(report).items():
        if "csv" in formats:
            p = out_dir / f"{name}.csv"
            p.write_text(to_csv(rows), encoding="utf-8")
            written.append(p)
        if "parquet" in formats and rows:
            p = out_dir / f"{name}.parquet"
            p.write_bytes(to_parquet(rows))
            written.append(p)
    return written
