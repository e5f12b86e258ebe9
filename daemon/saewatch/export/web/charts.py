"""Small inline charts for the report page: SVG sparkline, frequency bars, stacked shares.

Everything is generated server-side as escaped markup (the page works offline, without a CDN and
without JavaScript). Only numbers computed here reach attribute values.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from html import escape

from saewatch.export.base import HistoryPoint

logger = logging.getLogger(__name__)

# Twelve distinguishable colours (Tableau-like); clusters cycle through them by id.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
    "#1f77b4",
    "#8c564b",
)


def sparkline(points: Sequence[HistoryPoint], width: int = 320, height: int = 72) -> str:
    """SVG line of drift scores over time, with the first/last time and the value range.

    >>> from datetime import datetime, timezone
    >>> t = [datetime(2026, 11, 25, 12, m, tzinfo=timezone.utc) for m in (0, 1, 2)]
    >>> svg = sparkline([HistoryPoint(t[0], 0.1), HistoryPoint(t[1], 2.0), HistoryPoint(t[2], 4.0)])
    >>> svg.startswith("<svg") and "polyline" in svg and "4.00" in svg
    True
    """
    label = "drift score over time"
    if len(points) < 2:
        value = f"{points[0].drift_score:.2f}" if points else "–"
        return (
            f'<svg class="spark" role="img" aria-label="{label}" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}"><text x="8" y="{height // 2}" '
            f'class="muted">score {value}; the chart fills in as diffs run</text></svg>'
        )
    pad_x, pad_top, pad_bottom = 4, 14, 16
    t0 = points[0].at.timestamp()
    span_t = max(points[-1].at.timestamp() - t0, 1e-9)
    lo = min(0.0, min(p.drift_score for p in points))
    hi = max(p.drift_score for p in points)
    span_v = max(hi - lo, 1e-9)
    inner_w, inner_h = width - 2 * pad_x, height - pad_top - pad_bottom

    def xy(p: HistoryPoint) -> tuple[float, float]:
        x = pad_x + inner_w * (p.at.timestamp() - t0) / span_t
        y = pad_top + inner_h * (1 - (p.drift_score - lo) / span_v)
        return x, y

    coords = [xy(p) for p in points]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    last_x, last_y = coords[-1]
    first_t, last_t = points[0].at.strftime("%H:%M"), points[-1].at.strftime("%H:%M")
    return (
        f'<svg class="spark" role="img" aria-label="{label}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">'
        f'<text x="{pad_x}" y="10" class="axis">max {hi:.2f}</text>'
        f'<polyline fill="none" stroke="#4e79a7" stroke-width="2" points="{line}"/>'
        f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="3" fill="#e15759"/>'
        f'<text x="{pad_x}" y="{height - 3}" class="axis">{first_t}</text>'
        f'<text x="{width - pad_x}" y="{height - 3}" text-anchor="end" class="axis">'
        f"{last_t} · {points[-1].drift_score:.2f}</text></svg>"
    )


def frequency_bars(freq_baseline: float, freq_candidate: float, scale: float) -> str:
    """Two horizontal bars (baseline, candidate) scaled to ``scale`` with percentages.

    >>> html = frequency_bars(0.1, 0.4, 0.4)
    >>> 'width:25.0%' in html and 'width:100.0%' in html and '40.0%' in html
    True
    """
    scale = max(scale, 1e-12)
    rows = []
    for side, freq in (("baseline", freq_baseline), ("candidate", freq_candidate)):
        width = min(100.0, 100.0 * freq / scale)
        rows.append(
            f'<div class="bar-row"><span class="bar {side}" style="width:{width:.1f}%" '
            f'title="{side}: {100 * freq:.1f}% of documents"></span>'
            f'<span class="bar-value">{100 * freq:.1f}%</span></div>'
        )
    return f'<div class="bars">{"".join(rows)}</div>'


def stacked_shares(segments: Sequence[tuple[str, float, str]]) -> str:
    """One stacked bar: ``(cluster id, share, tooltip)`` segments coloured by cluster id.

    >>> '30.0%' in stacked_shares([("0", 0.7, "a"), ("1", 0.3, "<b>")])
    True
    """
    parts = []
    for cluster, share, tip in segments:
        colour = PALETTE[int(cluster) % len(PALETTE)] if cluster.isdigit() else "#cfcfcf"
        title = escape(f"cluster {cluster}: {100 * share:.1f}% {tip}".strip())
        text = f"{100 * share:.0f}%" if share >= 0.06 else ""
        parts.append(
            f'<span class="seg" style="width:{100 * share:.1f}%;background:{colour}" '
            f'title="{title}">{text}</span>'
        )
    return f'<div class="stack">{"".join(parts)}</div>'
