"""Tiny inline-SVG charts for the report: scatter, step line and grouped bars, no dependency.

Every chart is one ``<svg>`` string with its axes labelled, meant to be pasted into an HTML page
that opens without a server. Points carry a ``<title>`` so a browser shows the trial on hover.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

WIDTH, HEIGHT = 560, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 40, 48  # margins in px: room for tick labels and titles


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (1, 2 or 5 times a power of ten) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    k = 0
    while first + k * step <= hi + 1e-9 * step:
        ticks.append(round(first + k * step, 12))
        k += 1
    return ticks


def padded(values: Sequence[float], *, pad: float = 0.05,
           include: Sequence[float] = ()) -> tuple[float, float]:
    """A range covering ``values`` (and ``include``) with ``pad`` of its span on each side."""
    finite = [v for v in [*values, *include] if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.1
    return lo - pad * span, hi + pad * span


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"


@dataclass
class Chart:
    """A plot area with linear x and y axes; add marks, then ``render()``."""

    title: str
    x_label: str
    y_label: str
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    marks: list[str] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (symbol svg, text)

    def x(self, v: float) -> float:
        lo, hi = self.x_range
        return LEFT + (v - lo) / ((hi - lo) or 1.0) * (WIDTH - LEFT - RIGHT)

    def y(self, v: float) -> float:
        lo, hi = self.y_range
        return HEIGHT - BOTTOM - (v - lo) / ((hi - lo) or 1.0) * (HEIGHT - TOP - BOTTOM)

    def points(self, xs: Sequence[float], ys: Sequence[float], *, titles: Sequence[str],
               shape: str = "circle", color: str = "#999", size: float = 4.0, fill: bool = True,
               label: str = "") -> None:
        """One marker per (x, y); ``shape`` is circle, diamond or ring."""
        for xv, yv, text in zip(xs, ys, titles):
            if math.isfinite(xv) and math.isfinite(yv):
                mark = _marker(self.x(xv), self.y(yv), shape, color, size, fill)
                self.marks.append(f"<g>{mark}<title>{escape(text)}</title></g>")
        if label:
            self.legend.append((_marker(0, 0, shape, color, size, fill), label))

    def step_line(self, xs: Sequence[float], ys: Sequence[float], *, color: str = "#1f77b4",
                  label: str = "", horizontal_first: bool = True) -> None:
        """A staircase through the points, in the order given."""
        pts = [(self.x(a), self.y(b)) for a, b in zip(xs, ys)]
        if not pts:
            return
        path = [f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            corner = (x1, y0) if horizontal_first else (x0, y1)
            path.append(f"L{corner[0]:.1f},{corner[1]:.1f} L{x1:.1f},{y1:.1f}")
        self.marks.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color}" '
                          'stroke-width="1.5"/>')
        if label:
            self.legend.append((f'<line x1="-6" y1="0" x2="6" y2="0" stroke="{color}" '
                                'stroke-width="2"/>', label))

    def bars(self, groups: Sequence[str], series: Sequence[tuple[str, str, Sequence[float]]]
             ) -> None:
        """Grouped bars: one group per x label, one bar per (label, color, values) series."""
        n, slot = len(series), (WIDTH - LEFT - RIGHT) / max(len(groups), 1)
        width = slot * 0.8 / max(n, 1)
        base = self.y(max(self.y_range[0], 0.0))
        for g, name in enumerate(groups):
            for s, (label, color, values) in enumerate(series):
                x0 = LEFT + g * slot + slot * 0.1 + s * width
                top = self.y(values[g])
                self.marks.append(
                    f'<rect x="{x0:.1f}" y="{min(top, base):.1f}" width="{width:.1f}" '
                    f'height="{abs(base - top):.1f}" fill="{color}"><title>'
                    f"{escape(f'block {name}: {label} {values[g]:g}')}</title></rect>")
            self.marks.append(f'<text x="{LEFT + (g + 0.5) * slot:.1f}" '
                              f'y="{HEIGHT - BOTTOM + 14}" text-anchor="middle">'
                              f"{escape(name)}</text>")
        for label, color, _ in series:
            self.legend.append((f'<rect x="-5" y="-5" width="10" height="10" fill="{color}"/>',
                                label))

    def render(self, *, x_ticks: bool = True) -> str:
        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
                 f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11" '
                 f'role="img" aria-label="{escape(self.title)}">',
                 f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-size="13" '
                 f'font-weight="bold">{escape(self.title)}</text>']
        x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
        for t in nice_ticks(*self.y_range):
            parts.append(f'<line x1="{x0}" y1="{self.y(t):.1f}" x2="{x1}" y2="{self.y(t):.1f}" '
                         'stroke="#eee"/>')
            parts.append(f'<text x="{x0 - 4}" y="{self.y(t) + 4:.1f}" text-anchor="end">'
                         f"{_fmt(t)}</text>")
        if x_ticks:
            for t in nice_ticks(*self.x_range):
                parts.append(f'<line x1="{self.x(t):.1f}" y1="{y0}" x2="{self.x(t):.1f}" '
                             f'y2="{y1}" stroke="#eee"/>')
                parts.append(f'<text x="{self.x(t):.1f}" y="{y1 + 14}" text-anchor="middle">'
                             f"{_fmt(t)}</text>")
        parts.append(f'<rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" '
                     'fill="none" stroke="#444"/>')
        parts.extend(self.marks)
        parts.append(f'<text x="{(x0 + x1) / 2}" y="{HEIGHT - 10}" text-anchor="middle">'
                     f"{escape(self.x_label)}</text>")
        parts.append(f'<text transform="translate(14,{(y0 + y1) / 2}) rotate(-90)" '
                     f'text-anchor="middle">{escape(self.y_label)}</text>')
        lx = x0 + 8
        for symbol, text in self.legend:
            parts.append(f'<g transform="translate({lx + 6},{TOP - 10})">{symbol}</g>'
                         f'<text x="{lx + 16}" y="{TOP - 6}">{escape(text)}</text>')
            lx += 26 + 6.2 * len(text)
        parts.append("</svg>")
        return "\n".join(parts)


def _marker(cx: float, cy: float, shape: str, color: str, size: float, fill: bool) -> str:
    paint = f'fill="{color}"' if fill else 'fill="none"'
    if shape == "diamond":
        s = size * 1.5
        corners = ((cx, cy - s), (cx + s, cy), (cx, cy + s), (cx - s, cy))
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in corners)
        return f'<polygon points="{pts}" {paint} stroke="{color}"/>'
    if shape == "ring":
        return (f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{size * 2:.1f}" fill="none" '
                f'stroke="{color}" stroke-width="2"/>')
    return f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{size:.1f}" {paint} stroke="{color}"/>'
