"""Small inline-SVG charts for the health pages: line charts and histograms.

Why not matplotlib: the report is written inside the health check, whose 10,000-product
run must stay within 3 s. On the development machine importing matplotlib took 1.5-4 s
and ten two-panel figures another 3-8 s (docs/reports.md has the figures); these charts
are plain SVG text built with numpy, a few milliseconds each, a few KB each, and need
nothing at view time (no script, no font, no network).

Every chart has a title saying what is plotted, axis labels with units, and optional
threshold lines and shaded periods. Colours are fixed here so a page is consistent:
`WINDOW` (the checked window) and `REFERENCE` (what it is compared with).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

ACTUAL = "#222222"
FORECAST = "#1f77b4"
WINDOW = "#d95f02"  # the checked window: spans, error bars
REFERENCE = "#7570b3"  # the reference: previous window or the champion's holdout
THRESHOLD = "#c0392b"
HEALTHY = "#1a9850"
UNHEALTHY = "#d73027"
MUTED = "#888888"

WIDTH, HEIGHT = 720, 230
_LEFT, _RIGHT, _TOP, _BOTTOM = 62, 14, 40, 42


@dataclass(frozen=True)
class Series:
    """One line: y values over the chart's x (NaN leaves a gap)."""

    label: str
    y: np.ndarray
    color: str
    dash: str | None = None
    markers: bool = False
    marker_colors: Sequence[str] | None = None  # per point, overrides `color` for markers


@dataclass(frozen=True)
class Band:
    """A shaded band between two lines over the chart's x (NaN leaves a gap), e.g. the
    served P10–P90 interval."""

    label: str
    lower: np.ndarray
    upper: np.ndarray
    color: str


@dataclass(frozen=True)
class Span:
    """A shaded x range [start, end] with a label (e.g. the window)."""

    start: float
    end: float
    label: str
    color: str


@dataclass(frozen=True)
class Rule:
    """A horizontal (`axis="y"`) or vertical (`axis="x"`) line at `value`, labelled."""

    value: float
    label: str
    color: str = THRESHOLD
    axis: str = "y"
    dash: str = "5,3"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About `n` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    value = start
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    while len(ticks) < 2 or ticks[-1] < hi - step * 1e-9:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def fmt_number(value: float) -> str:
    """A short tick label: 1200 -> 1.2k, 0.05 -> 0.05."""
    if value == 0:
        return "0"
    a = abs(value)
    if a >= 10_000:
        return f"{value / 1000:g}k"
    if a >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


class _Frame:
    """Maps data to pixels for one chart and collects its SVG elements."""

    def __init__(self, x_lo: float, x_hi: float, y_lo: float, y_hi: float, w: int, h: int):
        if x_hi <= x_lo:
            x_hi = x_lo + 1
        if y_hi <= y_lo:
            y_hi = y_lo + 1
        self.x_lo, self.x_hi, self.y_lo, self.y_hi = x_lo, x_hi, y_lo, y_hi
        self.w, self.h = w, h
        self.parts: list[str] = []

    def px(self, x: np.ndarray | float) -> np.ndarray | float:
        return _LEFT + (np.asarray(x, float) - self.x_lo) / (self.x_hi - self.x_lo) * (
            self.w - _LEFT - _RIGHT
        )

    def py(self, y: np.ndarray | float) -> np.ndarray | float:
        return (
            self.h
            - _BOTTOM
            - (np.asarray(y, float) - self.y_lo)
            / (self.y_hi - self.y_lo)
            * (self.h - _TOP - _BOTTOM)
        )

    def add(self, element: str) -> None:
        self.parts.append(element)


def _svg(frame: _Frame, title: str, legend: list[tuple[str, str, str | None]]) -> str:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {frame.w} {frame.h}" '
        f'width="{frame.w}" height="{frame.h}" role="img" class="chart" '
        f'aria-label="{escape(title)}" font-family="sans-serif" font-size="11">'
        f"<title>{escape(title)}</title>"
        f'<text x="{_LEFT}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>'
    )
    items = []
    x = frame.w - _RIGHT
    for label, color, dash in reversed(legend):
        width = 7 * len(label) + 26
        x -= width
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        items.append(
            f'<line x1="{x}" y1="{_TOP - 14}" x2="{x + 16}" y2="{_TOP - 14}" stroke="{color}" '
            f'stroke-width="3"{dash_attr}/>'
            f'<text x="{x + 20}" y="{_TOP - 10}">{escape(label)}</text>'
        )
    return head + "".join(frame.parts) + "".join(items) + "</svg>"


def _axes(
    frame: _Frame,
    x_ticks: Sequence[tuple[float, str]],
    y_ticks: Sequence[float],
    x_label: str,
    y_label: str,
    y_format: Callable[[float], str] = fmt_number,
) -> None:
    left, right = _LEFT, frame.w - _RIGHT
    bottom, top = frame.h - _BOTTOM, _TOP
    for t in y_ticks:
        y = float(frame.py(t))
        frame.add(
            f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#e5e5e5"/>'
            f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end">{escape(y_format(t))}</text>'
        )
    for value, label in x_ticks:
        x = float(frame.px(value))
        frame.add(
            f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#444"/>'
            f'<text x="{x:.1f}" y="{bottom + 15}" text-anchor="middle">{escape(label)}</text>'
        )
    frame.add(
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#444"/>'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#444"/>'
        f'<text x="{(left + right) / 2:.0f}" y="{frame.h - 6}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
        f'<text transform="translate(13 {(top + bottom) / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )


def _rules(frame: _Frame, rules: Sequence[Rule]) -> None:
    k = 0  # vertical rules so far: their labels are staggered so they do not overlap
    for r in rules:
        if not math.isfinite(r.value):
            continue
        if r.axis == "y":
            if not frame.y_lo <= r.value <= frame.y_hi:
                continue
            y = float(frame.py(r.value))
            frame.add(
                f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{frame.w - _RIGHT}" y2="{y:.1f}" '
                f'stroke="{r.color}" stroke-width="1.5" stroke-dasharray="{r.dash}"/>'
                f'<text x="{_LEFT + 4}" y="{y - 4:.1f}" fill="{r.color}">{escape(r.label)}</text>'
            )
        else:
            x = float(frame.px(r.value))
            right = x > frame.w * 0.6  # label on the left of a line near the right edge
            frame.add(
                f'<line x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" y2="{frame.h - _BOTTOM}" '
                f'stroke="{r.color}" stroke-width="1.5" stroke-dasharray="{r.dash}"/>'
                f'<text x="{x - 3 if right else x + 3:.1f}" y="{_TOP + 10 + 12 * (k % 3)}" '
                f'fill="{r.color}" '
                f'text-anchor="{"end" if right else "start"}">{escape(r.label)}</text>'
            )
            k += 1


def _points(xs: np.ndarray, ys: np.ndarray) -> list[str]:
    """Polyline point lists, one per run of finite values."""
    runs, current = [], []
    for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
        if math.isfinite(y):
            current.append(f"{x:.1f},{y:.1f}")
        elif current:
            runs.append(" ".join(current))
            current = []
    if current:
        runs.append(" ".join(current))
    return runs


def line_chart(
    *,
    title: str,
    x: np.ndarray,
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    x_ticks: Sequence[tuple[float, str]],
    spans: Sequence[Span] = (),
    rules: Sequence[Rule] = (),
    y_min: float | None = 0.0,
    log_y: bool = False,
    width: int = WIDTH,
    height: int = HEIGHT,
    bands: Sequence[Band] = (),
) -> str:
    """A line chart over numeric `x`, with shaded spans, bands and threshold rules.

    `log_y` plots log10 of the values (ticks labelled with the values themselves); bands
    are drawn on a linear axis only.
    """
    x = np.asarray(x, float)
    ys = [np.asarray(s.y, float) for s in series]
    if log_y:
        ys = [np.log10(np.clip(y, 1e-12, None)) for y in ys]
        bands = ()
    edges = [np.asarray(v, float) for b in bands for v in (b.lower, b.upper)]
    finite = np.concatenate([y[np.isfinite(y)] for y in [*ys, *edges]] + [np.array([])])
    rule_values = [
        (math.log10(max(r.value, 1e-12)) if log_y else r.value)
        for r in rules
        if r.axis == "y" and math.isfinite(r.value)
    ]
    lo = float(finite.min()) if len(finite) else 0.0
    hi = float(finite.max()) if len(finite) else 1.0
    if rule_values:
        lo, hi = min(lo, *rule_values), max(hi, *rule_values)
    if y_min is not None and not log_y:
        lo = min(lo, y_min)
    ticks = nice_ticks(math.floor(lo) if log_y else lo, math.ceil(hi) if log_y else hi)
    if log_y:
        ticks = [float(t) for t in range(int(min(ticks)), int(max(ticks)) + 1)]
    x_lo = float(x.min()) if len(x) else 0.0
    x_hi = float(x.max()) if len(x) else 1.0
    for s in spans:
        x_lo, x_hi = min(x_lo, s.start), max(x_hi, s.end)
    frame = _Frame(x_lo, x_hi, ticks[0], ticks[-1], width, height)
    for s in spans:
        x0, x1 = float(frame.px(s.start)), float(frame.px(s.end))
        frame.add(
            f'<rect x="{x0:.1f}" y="{_TOP}" width="{max(x1 - x0, 1):.1f}" '
            f'height="{height - _TOP - _BOTTOM}" fill="{s.color}" fill-opacity="0.12"/>'
            f'<text x="{x0 + 3:.1f}" y="{height - _BOTTOM - 4}" fill="{s.color}">'
            f"{escape(s.label)}</text>"
        )
    y_format = (lambda t: f"1e{t:.0f}" if t < -2 else f"{10**t:g}") if log_y else fmt_number
    _axes(frame, x_ticks, ticks, x_label, y_label, y_format)
    shown_rules = [
        Rule(math.log10(max(r.value, 1e-12)), r.label, r.color, r.axis, r.dash)
        if log_y and r.axis == "y"
        else r
        for r in rules
    ]
    _rules(frame, shown_rules)
    px = np.asarray(frame.px(x), float)
    for b in bands:
        lower, upper = np.asarray(b.lower, float), np.asarray(b.upper, float)
        ok = np.isfinite(lower) & np.isfinite(upper)
        # one polygon per run of consecutive days with a band
        for run in np.split(
            np.flatnonzero(ok), np.flatnonzero(np.diff(np.flatnonzero(ok)) > 1) + 1
        ):
            if not len(run):
                continue
            top = [f"{px[i]:.1f},{float(frame.py(upper[i])):.1f}" for i in run]
            bottom = [f"{px[i]:.1f},{float(frame.py(lower[i])):.1f}" for i in run[::-1]]
            frame.add(
                f'<polygon points="{" ".join(top + bottom)}" fill="{b.color}" '
                'fill-opacity="0.22" stroke="none"/>'
            )
    for s, y in zip(series, ys, strict=True):
        py = np.asarray(frame.py(y), float)
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        for run in _points(px, py):
            frame.add(
                f'<polyline points="{run}" fill="none" stroke="{s.color}" '
                f'stroke-width="1.6"{dash}/>'
            )
        if s.markers:
            colors = s.marker_colors or [s.color] * len(px)
            for xx, yy, c in zip(px.tolist(), py.tolist(), colors, strict=True):
                if math.isfinite(yy):
                    frame.add(f'<circle cx="{xx:.1f}" cy="{yy:.1f}" r="3.5" fill="{c}"/>')
    legend = [(s.label, s.color, s.dash) for s in series]
    legend += [(b.label, b.color, None) for b in bands]
    return _svg(frame, title, legend)


def histogram(
    *,
    title: str,
    groups: Sequence[tuple[str, np.ndarray, str]],
    x_label: str,
    y_label: str = "share of values (%)",
    bins: int = 20,
    rules: Sequence[Rule] = (),
    clip_quantile: float = 0.99,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """Histograms of one or more samples over shared bins, bars side by side per bin.

    Heights are shares (%) of each sample, so samples of different sizes compare; values
    beyond the `clip_quantile` of all values are counted in the last bin (so one outlier
    does not squash the rest) and the title's note says so.
    """
    samples = [np.asarray(v, float) for _, v, _ in groups]
    samples = [v[np.isfinite(v)] for v in samples]
    pooled = np.concatenate([*samples, np.array([])])
    if not len(pooled):
        frame = _Frame(0, 1, 0, 1, width, height)
        frame.add(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="{MUTED}">'
            "no values</text>"
        )
        return _svg(frame, title, [])
    lo = float(pooled.min())
    hi = float(np.quantile(pooled, clip_quantile)) if len(pooled) > 20 else float(pooled.max())
    for r in rules:
        if r.axis == "x" and math.isfinite(r.value):
            lo, hi = min(lo, r.value), max(hi, r.value)
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    shares = []
    for v in samples:
        counts = np.histogram(np.clip(v, lo, hi), bins=edges)[0]
        shares.append(100.0 * counts / max(len(v), 1))
    top = max(float(s.max()) for s in shares) if shares else 1.0
    ticks = nice_ticks(0.0, top)
    frame = _Frame(lo, hi, 0.0, ticks[-1], width, height)
    x_ticks = [(t, fmt_number(t)) for t in nice_ticks(lo, hi, 6) if lo <= t <= hi]
    _axes(frame, x_ticks, ticks, x_label, y_label)
    bin_px = (float(frame.px(edges[1])) - float(frame.px(edges[0]))) * 0.9
    bar = bin_px / max(len(groups), 1)
    for gi, (share, (_, _, color)) in enumerate(zip(shares, groups, strict=True)):
        xs = np.asarray(frame.px(edges[:-1]), float) + gi * bar
        ys = np.asarray(frame.py(share), float)
        base = float(frame.py(0.0))
        for xx, yy in zip(xs.tolist(), ys.tolist(), strict=True):
            if base - yy > 0.05:
                frame.add(
                    f'<rect x="{xx:.1f}" y="{yy:.1f}" width="{max(bar - 0.5, 0.8):.1f}" '
                    f'height="{base - yy:.1f}" fill="{color}" fill-opacity="0.85"/>'
                )
    _rules(frame, rules)
    legend = [
        (f"{label} (n={len(v)})", color, None)
        for (label, _, color), v in zip(groups, samples, strict=True)
    ]
    return _svg(frame, title, legend)


def bullet(value: float | None, threshold: float, *, higher_is_bad: bool = True) -> str:
    """A small bar of `value` against a threshold line (for the figures table)."""
    w, h = 160, 16
    if value is None or not math.isfinite(value):
        return f'<svg width="{w}" height="{h}" role="img" aria-label="no value"></svg>'
    top = max(abs(value), abs(threshold)) * 1.25 or 1.0
    bad = value > threshold if higher_is_bad else value < threshold
    color = UNHEALTHY if bad else HEALTHY
    vx = w * min(abs(value) / top, 1.0)
    tx = w * abs(threshold) / top
    return (
        f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="{value:.3g} against threshold {threshold:g}">'
        f'<rect x="0" y="3" width="{w}" height="10" fill="#eee"/>'
        f'<rect x="0" y="3" width="{vx:.1f}" height="10" fill="{color}"/>'
        f'<line x1="{tx:.1f}" y1="0" x2="{tx:.1f}" y2="{h}" stroke="{THRESHOLD}" stroke-width="2"/>'
        "</svg>"
    )
