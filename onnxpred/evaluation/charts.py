"""Small self-contained SVG charts for the HTML report: bars (grouped or stacked) and points with
confidence whiskers. No plotting library: the report must open offline and embed every figure."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Optional, Sequence

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")

_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 40, 48
_FONT = 'font-family="system-ui, sans-serif" font-size="12"'


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[Optional[float]]  # one per category; None leaves a gap
    low: Optional[Sequence[Optional[float]]] = None  # whisker ends (confidence bounds), points charts only
    high: Optional[Sequence[Optional[float]]] = None
    color: Optional[str] = None  # default: the palette, by position


def _color(series: Series, number: int) -> str:
    return series.color or PALETTE[number % len(PALETTE)]


@dataclass(frozen=True)
class _Frame:
    """Plot area geometry and the value → y mapping."""

    width: int
    height: int
    y_min: float
    y_max: float
    top: int = _TOP  # the legend's rows sit above the plot

    @property
    def plot_width(self) -> float:
        return self.width - _LEFT - _RIGHT

    def y(self, value: float) -> float:
        span = self.height - self.top - _BOTTOM
        return self.top + span * (1 - (value - self.y_min) / (self.y_max - self.y_min))


def _percent(value: float, digits: int = 1) -> str:
    return f"{value * 100:.{digits}f}%"


def _axes(frame: _Frame, categories: Sequence[str], x_label: str, y_label: str) -> list[str]:
    parts = []
    step = _nice_step((frame.y_max - frame.y_min) / 5)
    digits = next(d for d in range(4) if abs(step * 10 ** (d + 2) - round(step * 10 ** (d + 2))) < 1e-6)
    tick = math.ceil(frame.y_min / step - 1e-9) * step
    while tick <= frame.y_max + 1e-9:
        y = frame.y(tick)
        parts.append(f'<line x1="{_LEFT}" x2="{frame.width - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_percent(tick, digits)}</text>')
        tick += step
    bottom = frame.y(frame.y_min)
    parts.append(f'<line x1="{_LEFT}" x2="{frame.width - _RIGHT}" y1="{bottom:.1f}" y2="{bottom:.1f}" stroke="#333"/>')
    slot = frame.plot_width / len(categories)
    label_width = 7 * max((len(category) for category in categories), default=1) + 8  # 7 px a character
    label_every = max(1, math.ceil(len(categories) * max(28, label_width) / frame.plot_width))  # no overlaps
    for index, category in enumerate(categories):
        if index % label_every == 0:
            x = _LEFT + slot * (index + 0.5)
            parts.append(f'<text x="{x:.1f}" y="{bottom + 16:.1f}" text-anchor="middle">{escape(category)}</text>')
    parts.append(f'<text x="{_LEFT + frame.plot_width / 2:.1f}" y="{frame.height - 8}" text-anchor="middle">'
                 f'{escape(x_label)}</text>')
    parts.append(f'<text transform="translate(14 {frame.y((frame.y_min + frame.y_max) / 2):.1f}) rotate(-90)" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    return parts


def _nice_step(raw: float) -> float:
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw - 1e-12)


def _legend_rows(series: Sequence[Series], width: int) -> list[list[tuple[int, int, Series]]]:
    """``(index, x, series)`` per row: one row above the plot, wrapping as the width requires."""
    rows: list[list[tuple[int, int, Series]]] = [[]]
    x = _LEFT
    for index, item in enumerate(series):
        item_width = 28 + 7 * len(item.name)  # 7 px: a 12 px font's average character
        if x + item_width > width and x > _LEFT:
            rows.append([])
            x = _LEFT
        rows[-1].append((index, x, item))
        x += item_width
    return rows


def _legend(series: Sequence[Series], width: int) -> list[str]:
    """The legend rows above the plot (the default top margin holds two)."""
    parts = []
    for number, row in enumerate(_legend_rows(series, width)):
        y = 4 + 16 * number
        for index, x, item in row:
            parts.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{_color(item, index)}"/>')
            parts.append(f'<text x="{x + 16}" y="{y + 10}">{escape(item.name)}</text>')
    return parts


def _svg(frame: _Frame, title: str, body: list[str]) -> str:
    # Inline SVG in HTML5 needs no xmlns; leaving it out keeps the page free of any URL.
    return (f'<svg role="img" viewBox="0 0 {frame.width} {frame.height}" '
            f'width="{frame.width}" height="{frame.height}" {_FONT}><title>{escape(title)}</title>'
            + "".join(body) + "</svg>")


def bar_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    stacked: bool = False,
    tooltips: Optional[Sequence[str]] = None,
    height: int = 300,
) -> str:
    """Bars of fractions (0..1) per category, side by side or ``stacked``; ``tooltips`` name the categories
    in each bar's hover text (the axis shows ``categories``, which may be short indices)."""
    bars_per_slot = 1 if stacked else len(series)
    width = max(480, min(1200, _LEFT + _RIGHT + len(categories) * max(20, 9 * bars_per_slot + 6)))
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(categories))] if stacked else \
        [max((s.values[i] or 0) for s in series) for i in range(len(categories))]
    frame = _Frame(width, height, 0.0, _nice_ceiling(max(totals, default=0)))
    slot = frame.plot_width / len(categories)
    bar_width = slot * 0.8 / bars_per_slot
    body = _axes(frame, categories, x_label, y_label)
    for index in range(len(categories)):
        base = 0.0
        for number, item in enumerate(series):
            value = item.values[index]
            if value is None:
                continue
            x = _LEFT + slot * index + slot * 0.1 + (0 if stacked else number * bar_width)
            bottom, top = (base, base + value) if stacked else (0.0, value)
            y_top, y_bottom = frame.y(min(top, frame.y_max)), frame.y(bottom)
            hover = f"{tooltips[index] if tooltips else categories[index]} · {item.name}: {_percent(value, 2)}"
            body.append(f'<rect x="{x:.1f}" y="{y_top:.1f}" width="{bar_width:.1f}" height="{y_bottom - y_top:.1f}" '
                        f'fill="{_color(item, number)}"><title>{escape(hover)}</title></rect>')
            if stacked:
                base = top
    body += _legend(series, width)
    return _svg(frame, title, body)


def _nice_ceiling(value: float) -> float:
    """The axis top for a largest value: 1.0 for shares above a half, a round number otherwise."""
    if value > 0.5:
        return 1.0
    return _nice_step(value / 5) * 5 if value > 0 else 1.0


def points_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    height: int = 300,
) -> str:
    """Points with confidence whiskers per category, series side by side; the y range fits the whiskers so
    that small differences between categories stay visible."""
    lows = [v for s in series for v in [*s.values, *(s.low or ())] if v is not None]
    highs = [v for s in series for v in [*s.values, *(s.high or ())] if v is not None]
    low, high = min(lows, default=0.0), max(highs, default=1.0)
    margin = max(0.02, (high - low) * 0.1)
    step = _nice_step((high - low + 2 * margin) / 5)
    y_min = max(0.0, math.floor((low - margin) / step) * step)
    y_max = min(1.0, math.ceil((high + margin) / step) * step)
    frame = _Frame(max(480, _LEFT + _RIGHT + 90 * len(categories)), height, y_min, max(y_max, y_min + step))
    slot = frame.plot_width / len(categories)
    offset = slot * 0.6 / max(1, len(series))
    body = _axes(frame, categories, x_label, y_label)
    for number, item in enumerate(series):
        color = _color(item, number)
        for index, value in enumerate(item.values):
            if value is None:
                continue
            x = _LEFT + slot * index + slot * 0.2 + offset * (number + 0.5)
            hover = f"{categories[index]} · {item.name}: {_percent(value, 2)}"
            if item.low is not None and item.high is not None and item.low[index] is not None:
                y_low, y_high = frame.y(item.low[index]), frame.y(item.high[index])
                hover += f" (95% CI {_percent(item.low[index], 1)}–{_percent(item.high[index], 1)})"
                body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y_low:.1f}" y2="{y_high:.1f}" stroke="{color}" '
                            'stroke-width="2"/>')
                for y in (y_low, y_high):
                    body.append(f'<line x1="{x - 4:.1f}" x2="{x + 4:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                                f'stroke="{color}" stroke-width="2"/>')
            body.append(f'<circle cx="{x:.1f}" cy="{frame.y(value):.1f}" r="4.5" fill="{color}">'
                        f'<title>{escape(hover)}</title></circle>')
    body += _legend(series, frame.width)
    return _svg(frame, title, body)


@dataclass(frozen=True)
class TradeoffPoint:
    """One configuration on the accuracy-vs-savings plane: ``x`` the MACs saved as a fraction, ``y``
    an accuracy with its confidence bounds; ``x_alt`` a second saving of the same configuration (the
    MACs the kernels actually skipped, drawn hollow and joined to ``x``); ``group`` colours it."""

    label: str
    x: float
    y: float
    y_low: Optional[float] = None
    y_high: Optional[float] = None
    x_alt: Optional[float] = None
    highlight: bool = False
    group: str = ""


def pareto_frontier(points: Sequence[TradeoffPoint]) -> list[TradeoffPoint]:
    """The points no other point beats on both saving and accuracy, by increasing saving."""
    frontier: list[TradeoffPoint] = []
    for point in sorted(points, key=lambda p: (-p.x, -p.y)):
        if not frontier or point.y > frontier[-1].y:
            frontier.append(point)
    return frontier[::-1]


def tradeoff_chart(
    points: Sequence[TradeoffPoint],
    *,
    title: str,
    x_label: str,
    y_label: str,
    reference_y: Optional[float] = None,
    reference_label: str = "original",
    width: int = 760,
    height: int = 440,
) -> str:
    """Accuracy against savings: every point with its confidence whisker, the frontier drawn through
    the points nothing beats, the ``highlight`` ones ringed, and ``reference_y`` (the original's
    accuracy) as a dashed line. Filled markers are ``x``, hollow ones ``x_alt``."""
    groups = list(dict.fromkeys(p.group for p in points))
    series = [Series(group or "configurations", ()) for group in groups]
    ys = [v for p in points for v in (p.y, p.y_low, p.y_high) if v is not None] + \
        ([reference_y] if reference_y is not None else [])
    low, high = min(ys, default=0.0), max(ys, default=1.0)
    pad = max(0.02, (high - low) * 0.08)
    step = _nice_step((high - low + 2 * pad) / 5)
    y_min, y_max = max(0.0, math.floor((low - pad) / step) * step), min(1.0, math.ceil((high + pad) / step) * step)
    top = max(_TOP, 16 * len(_legend_rows(series, width)) + 12)
    frame = _Frame(width, height + top - _TOP, y_min, max(y_max, y_min + step), top)
    x_top = _nice_ceiling(max([p.x for p in points] + [p.x_alt or 0 for p in points] + [0.01]))

    def x_of(value: float) -> float:
        return _LEFT + frame.plot_width * value / x_top

    body = _axes(frame, [""], x_label, y_label)
    x_step = _nice_step(x_top / 5)
    tick = 0.0
    while tick <= x_top + 1e-9:
        body.append(f'<text x="{x_of(tick):.1f}" y="{frame.y(frame.y_min) + 16:.1f}" text-anchor="middle">'
                    f'{_percent(tick, 0 if x_step >= 0.01 else 1)}</text>')
        tick += x_step
    if reference_y is not None:
        y = frame.y(reference_y)
        body.append(f'<line x1="{_LEFT}" x2="{frame.width - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#555" '
                    'stroke-dasharray="6 4"/>')
        body.append(f'<text x="{frame.width - _RIGHT - 4}" y="{y - 5:.1f}" text-anchor="end" fill="#555">'
                    f'{escape(reference_label)} {_percent(reference_y)}</text>')
    frontier = pareto_frontier(points)
    if len(frontier) > 1:
        path = " ".join(f"{x_of(p.x):.1f},{frame.y(p.y):.1f}" for p in frontier)
        body.append(f'<polyline points="{path}" fill="none" stroke="#888" stroke-width="1.5"/>')
    for point in points:
        color = _color(series[groups.index(point.group)], groups.index(point.group))
        x, y = x_of(point.x), frame.y(point.y)
        hover = f"{point.label}: {y_label} {_percent(point.y, 1)}"
        if point.y_low is not None and point.y_high is not None:
            hover += f" (95% CI {_percent(point.y_low, 1)}–{_percent(point.y_high, 1)})"
            body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.y(point.y_low):.1f}" '
                        f'y2="{frame.y(point.y_high):.1f}" stroke="{color}" stroke-opacity="0.5"/>')
        hover += f", {x_label} {_percent(point.x, 1)}"
        if point.x_alt is not None:
            hover += f" ({_percent(point.x_alt, 1)} skipped by the kernels)"
            body.append(f'<line x1="{x:.1f}" x2="{x_of(point.x_alt):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                        f'stroke="{color}" stroke-opacity="0.5"/>')
            body.append(f'<circle cx="{x_of(point.x_alt):.1f}" cy="{y:.1f}" r="3.5" fill="white" stroke="{color}"/>')
        if point.highlight:
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="none" stroke="#000" stroke-width="2"/>')
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{color}"><title>{escape(hover)}</title></circle>')
    body += _legend(series, frame.width)
    return _svg(frame, title, body)
