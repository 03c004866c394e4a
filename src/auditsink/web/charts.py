"""SVG charts drawn on the server: no JavaScript, no build step, readable without colour.

``stacked_bars`` draws events per time bucket by verb, with axes, a legend and a ``<title>``
on every bar segment (shown as a tooltip, read by screen readers).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

# Reads are cool colours, writes warm, deletes red: a burst of deletes stands out.
VERB_COLOURS = {
    "get": "#4e79a7", "list": "#76b7b2", "watch": "#59a14f", "create": "#f28e2b",
    "update": "#edc948", "patch": "#b07aa1", "delete": "#e15759", "deletecollection": "#ff9da7",
}
OTHER_COLOUR = "#9c755f"
_EXTRA = ("#bab0ac", "#86bcb6", "#d37295", "#fabfd2", "#8cd17d")

WIDTH, HEIGHT = 960, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 64


def colour(verb: str, index: int = 0) -> str:
    """The fill of a verb's series; unknown verbs get stable extra colours."""
    if not verb:
        return OTHER_COLOUR
    return VERB_COLOURS.get(verb) or _EXTRA[index % len(_EXTRA)]


def nice_ticks(maximum: int, count: int = 5) -> list[int]:
    """Round axis ticks from 0 covering ``maximum``.

    >>> nice_ticks(87)
    [0, 20, 40, 60, 80, 100]
    """
    if maximum <= 0:
        return [0, 1]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    top = int(math.ceil(maximum / step) * step)
    return list(range(0, top + 1, int(step)))


def _label(micros: int, span_seconds: float, bucket_seconds: int) -> str:
    when = datetime.fromtimestamp(micros / 1_000_000, UTC)
    if bucket_seconds < 60:
        return when.strftime("%H:%M:%S")
    if span_seconds > 2 * 86400:
        return when.strftime("%m-%d %H:%M")
    return when.strftime("%H:%M")


def stacked_bars(chart: dict[str, Any], title: str = "Events by verb", height: int = HEIGHT,
                 what: str = "events") -> Markup:
    """An SVG stacked bar chart of ``chart["buckets"]`` (each ``{"t", "counts"}``) by series.

    A bucket with an ``href`` is a link over its whole column (an SVG ``<a>``, no script):
    the histogram's bars narrow the range to their bucket when clicked.
    """
    buckets: list[dict[str, Any]] = chart["buckets"]
    series: list[str] = chart["series"]
    seconds = chart["bucket_seconds"]
    unit = unit_label(seconds)
    these = f"this {unit}" if " " not in unit else f"these {unit}"
    plot_w, plot_h = WIDTH - LEFT - RIGHT, height - TOP - BOTTOM
    peak = max((b["total"] for b in buckets), default=0)
    ticks = nice_ticks(peak)
    scale = plot_h / ticks[-1]
    n = max(len(buckets), 1)
    slot = plot_w / n
    bar_w = max(slot * 0.8, 1.0)
    total = sum(b["total"] for b in buckets)
    start = escape(buckets[0]["time"]) if buckets else ""
    out = [
        (f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
         'aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">'),
        f'<title id="chart-title">{escape(title)}</title>',
        (f'<desc id="chart-desc">Stacked bars, one per {unit}, of {total} {what} from {start}'
         ' (UTC); colours are verbs, see the legend.</desc>'),
    ]
    # Y axis: gridlines and counts.
    for tick in ticks:
        y = TOP + plot_h - tick * scale
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"'
                   ' stroke="#ddd" stroke-width="1"/>')
        out.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
                   f'font-size="11" fill="#444">{tick}</text>')
    out.append(f'<text x="14" y="{TOP + plot_h / 2:.0f}" font-size="12" fill="#444" '
               f'text-anchor="middle" transform="rotate(-90 14 {TOP + plot_h / 2:.0f})">'
               f'{what} per {unit}</text>')
    # Bars, one stacked column per bucket, the largest series at the bottom.
    for i, bucket in enumerate(buckets):
        x = LEFT + i * slot + (slot - bar_w) / 2
        y = TOP + plot_h
        href = bucket.get("href")
        if href:
            # The whole column is the target, so a bucket of 1 event is as easy to hit.
            out.append(f'<a class="narrow" href="{escape(href)}"><rect class="hit" '
                       f'x="{LEFT + i * slot:.1f}" y="{TOP}" width="{slot:.1f}" '
                       f'height="{plot_h}" fill="transparent"><title>{escape(bucket["time"])} '
                       f'UTC: {bucket["total"]} — show only {these}</title></rect>')
        for index, verb in enumerate(series):
            count = bucket["counts"].get(verb, 0)
            if not count:
                continue
            h = count * scale
            y -= h
            out.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                       f'height="{max(h, 0.5):.1f}" fill="{colour(verb, index)}">'
                       f'<title>{escape(bucket["time"])} UTC, {escape(verb or "(none)")}: '
                       f'{count}</title></rect>')
        if href:
            out.append("</a>")
    # X axis: baseline and about eight time labels.
    base = TOP + plot_h
    out.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base}" y2="{base}" '
               'stroke="#444" stroke-width="1"/>')
    span = n * seconds
    every = max(1, math.ceil(n / 8))
    for i in range(0, len(buckets), every):
        x = LEFT + i * slot + slot / 2
        out.append(f'<text class="tick" x="{x:.1f}" y="{base + 16}" text-anchor="middle" '
                   f'font-size="11" fill="#444">{_label(buckets[i]["t"], span, seconds)}</text>')
    out.append(f'<text x="{WIDTH - RIGHT}" y="{base + 30}" text-anchor="end" font-size="11" '
               'fill="#444">time (UTC)</text>')
    # Legend: a swatch and the verb's total, left to right.
    x = LEFT
    for index, verb in enumerate(series):
        total = sum(b["counts"].get(verb, 0) for b in buckets)
        label = f"{verb or '(none)'} {total}"
        out.append(f'<g class="legend-item"><rect x="{x}" y="{height - 18}" width="12" '
                   f'height="12" fill="{colour(verb, index)}"/><text x="{x + 16}" '
                   f'y="{height - 8}" font-size="12" fill="#222">{escape(label)}</text></g>')
        x += 24 + 7 * len(label)
    out.append("</svg>")
    return Markup("\n".join(out))


def span_words(seconds: int) -> str:
    """A bucket width as a caption says it: ``60`` -> ``one minute``, ``300`` -> ``5 minutes``."""
    unit = unit_label(seconds)
    return unit if " " in unit else f"one {unit}"


def unit_label(seconds: int) -> str:
    """A bucket width in words: ``60`` -> ``minute``, ``300`` -> ``5 minutes``."""
    if seconds % 86400 == 0:
        return "day" if seconds == 86400 else f"{seconds // 86400} days"
    if seconds % 3600 == 0:
        return "hour" if seconds == 3600 else f"{seconds // 3600} hours"
    if seconds % 60 == 0:
        return "minute" if seconds == 60 else f"{seconds // 60} minutes"
    return "second" if seconds == 1 else f"{seconds} seconds"
