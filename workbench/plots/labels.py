"""Point labels that do not overlap, for scatter figures exported as static PNG.

Plotly draws a scatter's text at one fixed offset and never moves labels apart, so the names of nearby points (the
usual case on a leaderboard: many defenses within a few points of HS) print over each other and become one
unreadable block. adjustText solves this for matplotlib only, and plotly has no equivalent, so this module is a small
greedy placer of our own: labels are placed one by one, most crowded point first; each takes the first candidate
offset (rings of directions around its point, nearest ring first) whose text box overlaps no placed label, no
marker and stays inside the plot area, and is drawn as an annotation with a leader line to its point. When no
candidate is free, the one with the least overlap wins, so a label is never dropped.

Text boxes are estimated from the character count (`CHAR_PX` per character at the label font size): good enough
to keep labels apart without a text-measuring backend.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go

FONT_SIZE = 11
CHAR_PX = 6.6  # average glyph width at FONT_SIZE in plotly's default sans-serif font
LINE_PX = 15
MARKER_PX = 14
RADII_PX = (18, 34, 52, 74, 100, 130, 165)
DIRECTIONS = 16


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels (x to the right, y downwards, as plotly's annotation offsets)."""

    x0: float
    y0: float
    x1: float
    y1: float

    @classmethod
    def around(cls, cx: float, cy: float, width: float, height: float) -> Box:
        return cls(cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)

    def overlap(self, other: Box) -> float:
        w = min(self.x1, other.x1) - max(self.x0, other.x0)
        h = min(self.y1, other.y1) - max(self.y0, other.y0)
        return w * h if w > 0 and h > 0 else 0.0

    def inside(self, width: float, height: float) -> bool:
        return self.x0 >= 0 and self.y0 >= 0 and self.x1 <= width and self.y1 <= height


def text_size(text: str) -> tuple[float, float]:
    lines = text.split("<br>")
    return max(len(s) for s in lines) * CHAR_PX + 4, len(lines) * LINE_PX + 2


def _offsets() -> list[tuple[float, float]]:
    out = []
    for r in RADII_PX:
        for k in range(DIRECTIONS):  # start straight above, then sweep both ways
            a = -math.pi / 2 + (k + 1) // 2 * (2 * math.pi / DIRECTIONS) * (1 if k % 2 else -1)
            out.append((r * math.cos(a), r * math.sin(a)))
    return out


def place_labels(points: Sequence[tuple[float, float]], texts: Sequence[str], width: float, height: float
                 ) -> list[tuple[float, float]]:
    """Offsets (dx, dy) in pixels, one per point, from each point (pixel coordinates in a `width` × `height`
    plot area) to the centre of its label, such that labels overlap neither each other nor any marker."""
    if len(points) != len(texts):
        raise ValueError(f"{len(points)} points but {len(texts)} labels")
    markers = [Box.around(x, y, MARKER_PX, MARKER_PX) for x, y in points]
    crowding = [sum(math.dist(p, q) < 60 for q in points) for p in points]
    order = sorted(range(len(points)), key=lambda i: (-crowding[i], points[i][0], points[i][1]))
    placed: list[Box] = []
    offsets: dict[int, tuple[float, float]] = {}
    candidates = _offsets()
    for i in order:
        (x, y), (w, h) = points[i], text_size(texts[i])
        best, best_cost = candidates[0], math.inf
        for dx, dy in candidates:
            box = Box.around(x + dx, y + dy, w, h)
            cost = sum(box.overlap(b) for b in placed) + sum(box.overlap(m) for m in markers)
            cost += 0.0 if box.inside(width, height) else 1e6
            if cost < best_cost:
                best, best_cost = (dx, dy), cost
            if cost == 0:
                break
        offsets[i] = best
        placed.append(Box.around(x + best[0], y + best[1], w, h))
    return [offsets[i] for i in range(len(points))]


def add_point_labels(fig: go.Figure, x: Sequence[float], y: Sequence[float], texts: Sequence[str],
                     x_range: tuple[float, float], y_range: tuple[float, float], plot_size: tuple[float, float],
                     colors: Sequence[str] | None = None) -> go.Figure:
    """Annotate the points (data coordinates on linear axes with the given ranges; `plot_size` = the plot
    area in pixels, i.e. the figure size less its margins) with non-overlapping labels and leader lines."""
    width, height = plot_size
    px = [((xi - x_range[0]) / (x_range[1] - x_range[0]) * width,
           (y_range[1] - yi) / (y_range[1] - y_range[0]) * height) for xi, yi in zip(x, y, strict=True)]
    for (dx, dy), xi, yi, text, color in zip(place_labels(px, texts, width, height), x, y, texts,
                                             colors or ["#444"] * len(texts), strict=True):
        fig.add_annotation(x=xi, y=yi, text=text, ax=dx, ay=dy, axref="pixel", ayref="pixel", showarrow=True,
                           arrowhead=0, arrowwidth=0.8, arrowcolor=color, standoff=MARKER_PX / 2 - 2,
                           font=dict(size=FONT_SIZE, color="#222"), bgcolor="rgba(255,255,255,0.75)")
    return fig
