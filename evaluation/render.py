"""Render a report: one HTML document (Jinja2 template, autoescaped, charts as inline SVG),
and the same figures as CSV and Parquet tables for further analysis.

The HTML is the one rendering of a report: the evaluation page shows it (fetched with
`disposition=inline`), and the same document is downloaded, printed or written by
`nattillsyn report`. Swedish first, English second: `lang="sv"` labels every figure in
Swedish with the English after it, `lang="en"` in English only.

Everything rendered comes from the `Report` model, which is already suppressed and
pseudonymised: nothing here reads the database.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from . import charts
from .model import Estimate, NightRow, Report

LANGS = ("sv", "en")

TEMPLATES = Path(__file__).parent / "templates"


def _labels() -> dict[str, tuple[str, str]]:
    """Labels by key: (Swedish, English), from one locale file per language."""
    sv, en = (json.loads((TEMPLATES / f"report.{lang}.json").read_text("utf-8")) for lang in LANGS)
    if sv.keys() != en.keys():
        raise RuntimeError(f"report.sv.json and report.en.json differ in {set(sv) ^ set(en)}")
    return {k: (sv[k], en[k]) for k in sv}


L = _labels()


@dataclass(frozen=True)
class Words:
    """Labels and numbers in one language: Swedish (with English after) or English."""

    lang: str

    def __post_init__(self) -> None:
        if self.lang not in LANGS:
            raise ValueError(f"lang must be one of {', '.join(LANGS)}")

    def plain(self, key: str, **kw: object) -> str:
        """Text: 'svenska / English' (sv) or 'English' (en)."""
        sv, en = (s.format(**kw) for s in L[key])
        return f"{sv} / {en}" if self.lang == "sv" and sv != en else en

    def label(self, key: str, **kw: object) -> Markup:
        """Markup: the English after the Swedish in a muted span (sv), or English only."""
        sv, en = (s.format(**kw) for s in L[key])
        if self.lang == "en" or sv == en:
            return Markup("{}").format(en)
        return Markup('{} <span class="en">/ {}</span>').format(sv, en)

    def num(self, x: float | None, digits: int = 2) -> str:
        if x is None:
            return "–"
        s = f"{x:,.{digits}f}"
        if self.lang == "sv":  # 1 234,50 and a real minus sign, like the browser's sv-SE
            s = s.replace(",", "\u00a0").replace(".", ",").replace("-", "−")
        return s

    def pct(self, x: float | None) -> str:
        return "–" if x is None else f"{self.num(100 * x, 1)} %"

    def secs(self, x: float | None) -> str:
        if x is None:
            return "–"
        return f"{x:.0f} s" if x < 120 else f"{self.num(x / 60, 1)} min"

    def chart_num(self, x: float, digits: int) -> str:
        return self.num(x, digits)


@dataclass(frozen=True)
class Val:
    """One table cell: text, an interval after it, or suppressed."""

    text: str = ""
    ci: str | None = None
    suppressed: bool = False


def _est(w: Words, e: Estimate, fmt: Callable[[float | None], str] | None = None) -> Val:
    fmt = fmt or w.num
    if e.suppressed:
        return Val(suppressed=True)
    if e.value is None:
        return Val("–")
    return Val(fmt(e.value), None if e.low is None else f"({fmt(e.low)} – {fmt(e.high)})")


def _weekly(nights: list[NightRow]) -> list[tuple[str, dict[str, int]]]:
    """Sums per week (Monday) over the nights that are shown."""
    weeks: dict[str, dict[str, int]] = {}
    for n in nights:
        if n.suppressed:
            continue
        wk = (n.night - timedelta(days=n.night.weekday())).isoformat()
        w = weeks.setdefault(wk, {"residents": 0, "visits": 0, "digital_ok": 0})
        w["residents"] += n.residents or 0
        w["visits"] += n.visits or 0
        w["digital_ok"] += n.digital_ok or 0
    return sorted(weeks.items())


def _charts(report: Report, w: Words) -> dict[str, charts.Canvas]:
    out: dict[str, charts.Canvas] = {}
    s, ba = report.summary, report.before_after
    sup = w.plain("suppressed")
    weeks = _weekly(report.nights)
    if weeks:
        per = [(v["visits"] / v["residents"], v["digital_ok"] / v["residents"])
               if v["residents"] else (None, None) for _, v in weeks]  # fmt: skip
        base = None
        if (
            ba
            and not ba.before.suppressed
            and ba.before.visits_per_resident_night.value is not None
        ):
            base = (w.plain("baseline_line"), ba.before.visits_per_resident_night)
        out["trend"] = charts.line_chart(
            w.plain("trend"), [k for k, _ in weeks],
            [charts.Series(w.plain("physical"), "#1f77b4", [p for p, _ in per]),
             charts.Series(w.plain("digital"), "#ff7f0e", [d for _, d in per])],
            w.chart_num, base,
        )  # fmt: skip
    if ba is not None:
        sides = (("before", ba.before, "#999"), ("after", ba.after, "#1a7f4b"))
        for key, field in (("visits_prn", "visits_per_resident_night"),
                           ("minutes_prn", "minutes_per_resident_night")):  # fmt: skip
            out[f"ba_{field}"] = charts.bar_chart(
                w.plain(key),
                [charts.Bar(w.plain(k), None if x.suppressed else getattr(x, field), c)
                 for k, x, c in sides],
                w.chart_num, sup,
            )  # fmt: skip
    out["wake"] = charts.bar_chart(
        w.plain("awake_chart", min=f"{report.params.awakening_window_min:g}"),
        [charts.Bar(w.plain("after_physical"), s.awakening_rate_physical, "#c0632b"),
         charts.Bar(w.plain("after_digital"), s.awakening_rate_digital, "#1a7f4b")],
        w.chart_num, sup, 100,
    )  # fmt: skip
    shown = [u for u in report.units if not u.suppressed]
    if len(shown) > 1:
        for key, field, scale in (("visits_prn", "visits_per_resident_night", 1),
                                  ("share_digital", "avoided_share", 100)):  # fmt: skip
            out[f"units_{field}"] = charts.dot_chart(
                w.plain(key),
                [(u.name, getattr(u, field), u.site == report.site) for u in shown],
                w.chart_num, scale,
            )  # fmt: skip
    cells = [c for c in report.alerts if not c.suppressed and c.alerts]
    if cells:
        out["alerts"] = charts.stacked_bars(
            w.plain("alerts"),
            [(f"{c.kind} ({c.priority})", (c.alerts or 0) - (c.false_alarms or 0),
              c.false_alarms or 0) for c in cells],
            (w.plain("not_false"), w.plain("false_alarm")), w.chart_num,
        )  # fmt: skip
    return out


def _key_rows(report: Report, w: Words) -> list[tuple[str, Val]]:
    s = report.summary
    if s.suppressed:
        return [("residents", Val(suppressed=True))]
    return [
        ("residents", Val(str(s.residents))),
        ("nights", Val(str(s.resident_nights))),
        ("visits_prn", _est(w, s.visits_per_resident_night)),
        ("avoided", _est(w, s.avoided_share, w.pct)),
        ("saved", Val(w.num(s.staff_minutes_saved, 0))),
        ("staff_min", Val(w.num(s.staff_minutes, 0))),
        ("wake_p", _est(w, s.awakening_rate_physical, w.pct)),
        ("wake_d", _est(w, s.awakening_rate_digital, w.pct)),
        ("wake_diff", _est(w, s.awakening_difference, w.pct)),
        ("wake_excess", _est(w, s.staff_caused_awakenings, lambda x: w.num(x, 0))),
        ("alerts_100", _est(w, s.alerts_per_100_nights, lambda x: w.num(x, 1))),
        ("false", _est(w, s.false_alarm_share, w.pct)),
        ("ack", Val(f"{w.secs(s.ack_median_s)} / {w.secs(s.ack_p90_s)}")),
        ("resp", Val(f"{w.secs(s.response_median_s)} / {w.secs(s.response_p90_s)}")),
        ("coverage", _est(w, s.coverage, w.pct)),
        ("paused", Val(f"{s.paused_nights} ({w.pct(s.paused_share)})")),
    ]


def _tables(report: Report, w: Words) -> dict[str, list[list[Val]]]:
    """The rows of every table but the key figures (first cell: a name or label)."""
    sup = Val(suppressed=True)
    out: dict[str, list[list[Val]]] = {}
    ba = report.before_after
    if ba is not None:
        rows = []
        for side in (ba.before, ba.after):
            head = [Val(w.plain(side.label) if side.label in L else side.label),
                    Val(f"{side.start or '?'} – {side.end or '?'}")]  # fmt: skip
            rows.append(
                [*head, sup, Val(), Val(), Val()]
                if side.suppressed
                else [*head, Val(str(side.residents)), Val(str(side.resident_nights)),
                      _est(w, side.visits_per_resident_night),
                      _est(w, side.minutes_per_resident_night)]
            )  # fmt: skip
        rows.append([Val(w.plain("diff_visits")), Val(), Val(), Val(),
                     _est(w, ba.visits_difference), Val()])  # fmt: skip
        rows.append([Val(w.plain("change")), Val(), Val(), Val(),
                     _est(w, ba.visits_change, w.pct), Val()])  # fmt: skip
        rows.append([Val(w.plain("diff_minutes")), Val(), Val(), Val(), Val(),
                     _est(w, ba.minutes_difference)])  # fmt: skip
        out["ba"] = rows
    out["units"] = [
        [Val(u.name), sup, *[Val()] * 5]
        if u.suppressed
        else [Val(u.name), Val(str(u.residents)), _est(w, u.visits_per_resident_night),
              _est(w, u.avoided_share, w.pct), _est(w, u.awakening_rate_physical, w.pct),
              _est(w, u.false_alarm_share, w.pct), _est(w, u.coverage, w.pct)]
        for u in report.units
    ]  # fmt: skip
    out["diffs"] = [
        [Val(d.name), sup, *[Val()] * 4]
        if d.suppressed
        else [Val(d.name), _est(w, d.visits_per_resident_night), _est(w, d.avoided_share, w.pct),
              _est(w, d.awakening_rate_physical, w.pct), _est(w, d.false_alarm_share, w.pct),
              _est(w, d.coverage, w.pct)]
        for d in report.differences
    ]  # fmt: skip
    out["alerts"] = [
        [Val(c.kind), Val(c.priority), sup, Val(), Val(), Val()]
        if c.suppressed
        else [Val(c.kind), Val(c.priority), Val(str(c.alerts)), Val(w.pct(c.false_alarm_share)),
              Val(f"{w.secs(c.ack_median_s)} / {w.secs(c.ack_p90_s)}"),
              Val(f"{w.secs(c.response_median_s)} / {w.secs(c.response_p90_s)}")]
        for c in report.alerts
    ]  # fmt: skip
    out["residents"] = [
        [Val(r.pseudonym), Val(str(r.nights)), Val(w.num(r.visits_per_night)),
         Val(w.pct(r.avoided_share)), Val(f"{r.woken_after_physical}/{r.checks_physical}"),
         Val(f"{r.woken_after_digital}/{r.checks_digital}"), Val(str(r.alerts)),
         Val(w.pct(r.coverage))]
        for r in report.residents or []
    ]  # fmt: skip
    return out


_ENV = Environment(
    loader=PackageLoader("nattillsyn.evaluation", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def to_html(report: Report, lang: str = "sv") -> str:
    """The report as one self-contained HTML document (styles inline, charts as SVG)."""
    w = Words(lang)
    return _ENV.get_template("report.html.j2").render(
        r=report,
        p=report.params,
        w=w,
        lang=lang,
        key_rows=_key_rows(report, w),
        tables=_tables(report, w),
        charts=_charts(report, w),
    )


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
    # Optional and heavy: only Parquet exports load it.
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

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
