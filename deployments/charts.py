"""Server-rendered SVG time charts for the operator console: no script, no library, nothing fetched.

``time_chart`` draws one or more series over ``[start, end]`` with a zero-based y axis rounded up to a
readable maximum, hour:minute ticks and a legend. Points whose value is None are gaps (a minute with no
requests has no latency). ``step=True`` holds each value until the next point (replica counts).
Every text is escaped; the result is safe to put in a page as is.
"""

import math
from dataclasses import dataclass
from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 40  # plot margins: y labels left, x labels and legend below
COLOURS = ("#417690", "#d9534f", "#f0ad4e", "#5cb85c")  # the admin's blue first, then red, amber, green


@dataclass(frozen=True)
class Series:
    label: str
    points: list[tuple[datetime, float | None]]


def nice_max(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above ``value`` (1 for nothing to show)."""
    if value <= 0 or math.isnan(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value - 1e-12)


def _label(value: float) -> str:
    return f"{value:g}" if value < 10_000 else f"{value / 1000:g}k"


def time_chart(title: str, series: list[Series], start: datetime, end: datetime, *, unit: str = "",
               step: bool = False) -> SafeString:
    span = max((end - start).total_seconds(), 1.0)
    values = [v for s in series for _, v in s.points if v is not None]
    top = nice_max(max(values, default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: datetime) -> float:
        return LEFT + plot_w * min(max((at - start).total_seconds() / span, 0.0), 1.0)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / top)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="console-chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for i in range(5):  # y grid and labels
        value = top * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                     f'stroke="#ddd" stroke-width="1"/>'
                     f'<text x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end" font-size="10" '
                     f'fill="#666">{escape(_label(value))}</text>')
    for i in range(5):  # x ticks; the outer ones anchored inward, so they stay inside the chart
        at = start + (end - start) * i / 4
        anchor = {0: "start", 4: "end"}.get(i, "middle")
        parts.append(f'<text x="{x(at):.1f}" y="{TOP + plot_h + 14}" text-anchor="{anchor}" font-size="10" '
                     f'fill="#666">{at:%H:%M}</text>')
    if unit:
        parts.append(f'<text x="4" y="{TOP + 4}" font-size="10" fill="#666">{escape(unit)}</text>')
    for index, s in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        for run in _runs(s.points):
            coords: list[str] = []
            for n, (at, value) in enumerate(run):
                if step and n:
                    coords.append(f"{x(at):.1f},{y(run[n - 1][1]):.1f}")
                coords.append(f"{x(at):.1f},{y(value):.1f}")
            if len(coords) == 1:  # a lone point: a dot, or it would not show
                cx, cy = coords[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{colour}"/>')
            else:
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                             f'points="{" ".join(coords)}"/>')
        legend_x = LEFT + index * 130
        parts.append(f'<rect x="{legend_x}" y="{HEIGHT - 14}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{legend_x + 14}" y="{HEIGHT - 5}" font-size="11" fill="#333">'
                     f'{escape(s.label)}</text>')
    if not values:
        parts.append(f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle" font-size="12" '
                     f'fill="#999">no data in this window</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text above is escaped


def _runs(points: list[tuple[datetime, float | None]]) -> list[list[tuple[datetime, float]]]:
    """The points split at each None (a gap)."""
    runs: list[list[tuple[datetime, float]]] = [[]]
    for at, value in points:
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((at, value))
    return [run for run in runs if run]
