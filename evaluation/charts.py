"""The report's charts as SVG shapes: pure geometry, no markup.

A chart is a `Canvas` (size, an accessible title and a list of shapes); the report template
draws each shape as one SVG element, with its attribute values and text escaped. The same
charts are shown on the evaluation page and in the downloadable or printed report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .model import Estimate

GRID = "#e3e8ee"
AXIS_TEXT = "#567"
INK = "#234"
CHAR_W = 6.2  # average width of a character at font-size 11, for legends and margins


@dataclass(frozen=True)
class Shape:
    tag: str  # line, rect, text, polyline, circle
    attrs: dict[str, str]
    text: str = ""


@dataclass
class Canvas:
    width: int
    height: int
    title: str
    shapes: list[Shape] = field(default_factory=list)

    def add(self, tag: str, text: str = "", **attrs: object) -> None:
        self.shapes.append(
            Shape(tag, {k.replace("_", "-"): _attr(v) for k, v in attrs.items()}, text)
        )

    def line(self, x1: float, y1: float, x2: float, y2: float, **attrs: object) -> None:
        self.add("line", x1=x1, y1=y1, x2=x2, y2=y2, **attrs)

    def rect(self, x: float, y: float, w: float, h: float, **attrs: object) -> None:
        self.add("rect", x=x, y=y, width=max(0.0, w), height=max(0.0, h), **attrs)

    def text(self, x: float, y: float, text: str, **attrs: object) -> None:
        self.add("text", text, x=x, y=y, font_size=attrs.pop("font_size", 11), **attrs)


def _attr(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.1f}".rstrip("0").rstrip(".")
    return str(v)


@dataclass(frozen=True)
class Series:
    label: str
    color: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Bar:
    label: str
    estimate: Estimate | None
    color: str


def _ticks(c: Canvas, y: Callable[[float], float], ymax: float, x0: float, x1: float, fmt) -> None:
    for k in range(5):
        v = ymax * k / 4
        c.line(x0, y(v), x1, y(v), stroke=GRID)
        c.text(x0 - 6, y(v) + 4, fmt(v, 1), text_anchor="end", fill=AXIS_TEXT)


def _name_margin(names: Sequence[str], most: float) -> float:
    """Left margin for row names, right-aligned against the plot."""
    return min(most, 16 + max((len(n) for n in names), default=0) * CHAR_W)


def _x_axis(
    c: Canvas, left: float, xmax: float, top: float, foot: float, fmt, digits: int
) -> Callable[[float], float]:
    """Vertical grid lines with their values below, from `left` to the right margin; returns
    the value → x mapping. `foot`: the space below the grid (labels 14 px above its end)."""
    right = c.width - 16

    def x(v: float) -> float:
        return left + (right - left) * v / xmax

    for k in range(5):
        v = xmax * k / 4
        c.line(x(v), top, x(v), c.height - foot, stroke=GRID)
        c.text(x(v), c.height - foot + 14, fmt(v, digits), text_anchor="middle", fill=AXIS_TEXT)
    return x


def _legend(
    c: Canvas, items: Sequence[tuple[str, str]], x: float, box_y: float, box_h: float, text_y: float
) -> None:
    """Colour boxes with their labels in one row."""
    for label, color in items:
        c.rect(x, box_y, 12, box_h, fill=color)
        c.text(x + 17, text_y, label, fill=INK)
        x += 17 + len(label) * CHAR_W + 24


def line_chart(
    title: str,
    xs: Sequence[str],
    series: Sequence[Series],
    fmt: Callable[[float, int], str],
    baseline: tuple[str, Estimate] | None = None,
) -> Canvas:
    """Lines over weeks; `baseline` a dashed level (with its interval as a band)."""
    w, h, left, right, top, bottom = 760, 260, 48, 12, 14, 44
    c = Canvas(w, h, title)
    values = [v for s in series for v in s.values if v is not None]
    if baseline is not None and baseline[1].value is not None:
        values.append(baseline[1].high if baseline[1].high is not None else baseline[1].value)
    ymax = max([0.1, *values]) * 1.15

    def x(i: int) -> float:
        return left + (0 if len(xs) < 2 else i * (w - left - right) / (len(xs) - 1))

    def y(v: float) -> float:
        return top + (h - top - bottom) * (1 - v / ymax)

    _ticks(c, y, ymax, left, w - right, fmt)
    step = max(1, -(-len(xs) // 8))
    for i, d in enumerate(xs):
        if i % step == 0:
            c.text(x(i), h - bottom + 16, d, text_anchor="middle", fill=AXIS_TEXT)
    if baseline is not None and baseline[1].value is not None:
        label, e = baseline
        if e.low is not None and e.high is not None:
            c.rect(left, y(e.high), w - right - left, y(e.low) - y(e.high), fill="#888",
                   fill_opacity="0.12")  # fmt: skip
        c.line(left, y(e.value), w - right, y(e.value), stroke="#888", stroke_dasharray="5 4")
        c.text(w - right, y(e.value) - 4, label, text_anchor="end", fill="#666")
    for s in series:
        pts = " ".join(
            f"{_attr(x(i))},{_attr(y(v))}" for i, v in enumerate(s.values) if v is not None
        )
        c.add("polyline", points=pts, fill="none", stroke=s.color, stroke_width=2)
    _legend(c, [(s.label, s.color) for s in series], left + 10.0, h - 14, 4, h - 9)
    return c


def bar_chart(
    title: str,
    bars: Sequence[Bar],
    fmt: Callable[[float, int], str],
    suppressed: str,
    scale: float = 1.0,
) -> Canvas:
    """Bars with their confidence intervals; a suppressed bar says so instead."""
    w, h, left, bottom, top = max(420, int(12 + len(title) * CHAR_W * 1.1)), 240, 44, 36, 32
    c = Canvas(w, h, title)
    c.text(6, 14, title, fill=INK, font_size=12)
    tops = [
        (b.estimate.high if b.estimate.high is not None else b.estimate.value) or 0
        for b in bars
        if b.estimate is not None
    ]
    ymax = max([0.01, *(t * scale for t in tops)]) * 1.15

    def y(v: float) -> float:
        return top + (h - top - bottom) * (1 - v / ymax)

    _ticks(c, y, ymax, left, w, fmt)
    bw = (w - left) / max(1, len(bars))
    for i, b in enumerate(bars):
        cx = left + bw * i + bw / 2
        e = b.estimate
        if e is None or e.suppressed or e.value is None:
            c.text(cx, h / 2, suppressed, text_anchor="middle", fill="#888")
        else:
            v = e.value * scale
            c.rect(cx - bw * 0.3, y(v), bw * 0.6, y(0) - y(v), fill=b.color)
            if e.low is not None and e.high is not None:
                c.line(cx, y(e.low * scale), cx, y(e.high * scale), stroke="#222",
                       stroke_width=1.5)  # fmt: skip
                for q in (e.low, e.high):
                    c.line(cx - 6, y(q * scale), cx + 6, y(q * scale), stroke="#222")
        c.text(cx, h - bottom + 18, b.label, text_anchor="middle", fill=INK, font_size=12)
    return c


def dot_chart(
    title: str,
    rows: Sequence[tuple[str, Estimate, bool]],
    fmt: Callable[[float, int], str],
    scale: float = 1.0,
) -> Canvas:
    """One dot per unit with its interval (the reported unit highlighted)."""
    left = _name_margin([name for name, _, _ in rows], 220.0)
    w, top, row = 420 + int(left), 26, 24
    h = top + row * len(rows) + 24
    c = Canvas(w, h, title)
    c.text(6, 14, title, fill=INK, font_size=12)
    his = [(e.high if e.high is not None else e.value) or 0 for _, e, _ in rows]
    x = _x_axis(c, left, max([0.01, *(v * scale for v in his)]) * 1.1, top, 20, fmt, 1)
    for i, (name, e, own) in enumerate(rows):
        cy = top + row * i + row / 2
        c.text(left - 8, cy + 4, name, text_anchor="end", fill=INK)
        if e.value is None:
            continue
        if e.low is not None and e.high is not None:
            c.line(x(e.low * scale), cy, x(e.high * scale), cy, stroke="#444")
        c.add("circle", cx=x(e.value * scale), cy=cy, r=5, fill="#1a7f4b" if own else "#69c")
    return c


def stacked_bars(
    title: str,
    rows: Sequence[tuple[str, int, int]],
    legend: tuple[str, str],
    fmt: Callable[[float, int], str],
) -> Canvas:
    """Horizontal bars of two parts (alerts: not false, false)."""
    left = _name_margin([name for name, _, _ in rows], 240.0)
    w, top, row = 420 + int(left), 10, 22
    h = top + row * len(rows) + 44
    c = Canvas(w, h, title)
    x = _x_axis(c, left, max([1, *(a + b for _, a, b in rows)]) * 1.05, top, 40, fmt, 0)
    colors = ("#69c", "#c63")
    for i, (name, a, b) in enumerate(rows):
        cy = top + row * i
        c.text(left - 8, cy + row / 2 + 4, name, text_anchor="end", fill=INK)
        c.rect(left, cy + 3, x(a) - left, row - 6, fill=colors[0])
        c.rect(x(a), cy + 3, x(a + b) - x(a), row - 6, fill=colors[1])
    _legend(c, list(zip(legend, colors, strict=True)), left, h - 12, 6, h - 6)
    return c
