"""A small server-side SVG: accuracies across versions (a chart library would be overkill).

Only numbers and fixed words go into the SVG; colours come from classes in console.css (no
style attributes: the CSP allows none).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup

WIDTH, HEIGHT, PAD = 640, 220, 36
SERIES = (("holdout", "holdout"), ("live", "live"), ("estimated", "estimated"))


def accuracy_svg(versions: Sequence[int], values: dict[str, Sequence[float]]) -> Markup:
    """One line per series (``holdout``, ``live``, ``estimated``), a point per version that has
    a value; y from 0 to 1."""
    if not versions:
        return Markup("")
    xs = _positions(len(versions))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'role="img" aria-labelledby="accuracy-plot-title" data-testid="accuracy-plot">',
        '<title id="accuracy-plot-title">Holdout, live and estimated accuracy by version</title>',
        *_axes(versions, xs),
    ]
    for key, css in SERIES:
        points = [
            (x, _y(v)) for x, v in zip(xs, values.get(key, ()), strict=False) if math.isfinite(v)
        ]
        if not points:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline class="series {css}" fill="none" points="{path}"/>')
        parts += [
            f'<circle class="series {css}" cx="{x:.1f}" cy="{y:.1f}" r="3"/>' for x, y in points
        ]
    parts += _legend()
    parts.append("</svg>")
    return Markup("".join(parts))


def _positions(n: int) -> list[float]:
    if n == 1:
        return [WIDTH / 2]
    step = (WIDTH - 2 * PAD) / (n - 1)
    return [PAD + i * step for i in range(n)]


def _y(value: float) -> float:
    return HEIGHT - PAD - max(0.0, min(1.0, value)) * (HEIGHT - 2 * PAD)


def _axes(versions: Sequence[int], xs: list[float]) -> list[str]:
    out = [f'<line class="axis" x1="{PAD}" y1="{_y(0)}" x2="{WIDTH - PAD}" y2="{_y(0)}"/>']
    for tick in (0.0, 0.5, 1.0):
        y = _y(tick)
        out.append(f'<line class="grid" x1="{PAD}" y1="{y}" x2="{WIDTH - PAD}" y2="{y}"/>')
        out.append(f'<text class="tick" x="4" y="{y + 4}">{tick:.1f}</text>')
    for x, version in zip(xs, versions, strict=True):
        out.append(f'<text class="tick" x="{x - 4:.1f}" y="{HEIGHT - 12}">v{int(version)}</text>')
    return out


def _legend() -> list[str]:
    out = []
    for i, (key, css) in enumerate(SERIES):
        x = PAD + i * 120
        out.append(f'<rect class="series {css}" x="{x}" y="6" width="10" height="10"/>')
        out.append(f'<text class="legend" x="{x + 14}" y="15">{key}</text>')
    return out
