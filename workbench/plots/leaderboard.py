"""Figures of the defense leaderboard (`workbench.leaderboard.Leaderboard`, read through the `Board` protocol below:
`rows`, `metrics`, `fa_metric()`; plots sit below the leaderboard and never import it).

    plot_hs_fa(board)   HS (x) vs FA (y), one marker per attacked model with 95 % error bars both ways;
                        colour = defense stage, symbol = attack; the good corner is top left
    plot_bars(board)    grouped bars: one group per defended model, one bar per headline rate (HS, HS+, FA,
                        benign and harmful refusal) with its 95 % interval; one panel per attack (p), so the
                        defenses of a stage read against the same attack side by side
    plot_metric(board, m) one rate, one panel per attack: each attacked model, and for an alignment-stage row
                        the aligned model before the attack next to it (the explorer's Defenses tab)
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.plots.labels import add_point_labels
from workbench.plots.style import MODEL_COLORS, PALETTE, apply_layout
from workbench.vocabulary import (
    ALIGNMENT,
    FINE_TUNING,
    NONE,
    POST_FINE_TUNING,
    axis_title,
    short_title,
)


class Board(Protocol):
    """What these figures read of a leaderboard: its rows (stage, defense, attack, p, rates, aligned_rates, ...)
    and the rate metrics present, in column order."""

    rows: Sequence[Any]
    metrics: Sequence[str]

    def fa_metric(self) -> str | None: ...


STAGE_COLORS = {NONE: "#7f7f7f", ALIGNMENT: PALETTE[0], FINE_TUNING: PALETTE[1], POST_FINE_TUNING: PALETTE[2]}
SYMBOLS = ["circle", "square", "diamond", "triangle-up", "cross", "x", "star", "hexagon"]


def _attack_label(row) -> str:
    return row.attack if row.p is None else f"{row.attack} p={row.p:g}"


def _data_range(values: list[dict], pad: float = 4.0) -> tuple[float, float]:
    """The axis range that holds every point with its interval, padded, on a 5 % grid within [-3, 103]: the
    good corner of a crowded board gets the whole plot instead of a fixed 0-100 square."""
    low = min(v["low"] for v in values) - pad
    high = max(v["high"] for v in values) + pad
    return max(-3.0, math.floor(low / 5) * 5), min(103.0, math.ceil(high / 5) * 5)


HS_FA_SIZE, HS_FA_MARGIN = (900, 640), dict(l=70, r=30, t=60, b=130)


def _point_label(row) -> str:
    """A point's label: the defense, and "full FT" where the user fine-tuned all weights (the default is LoRA), so
    the two SFT baselines of a board with both methods read apart."""
    return row.defense + (" · full FT" if row.method == "full" else "")


def plot_hs_fa(board: Board, hs: str = "hs", fa: str | None = None) -> go.Figure:
    fa = fa or board.fa_metric()
    rows = [r for r in board.rows if hs in r.rates and fa in r.rates]
    attacks = list(dict.fromkeys(_attack_label(r) for r in rows))
    fig = go.Figure()
    labelled: list[tuple[float, float, str, str]] = []
    for stage, color in STAGE_COLORS.items():
        for i, attack in enumerate(attacks):
            sel = [r for r in rows if r.stage == stage and _attack_label(r) == attack]
            if not sel:
                continue
            x, y = [r.rates[hs] for r in sel], [r.rates[fa] for r in sel]
            labelled += [(xv["value"], yv["value"], _point_label(r), color)
                         for r, xv, yv in zip(sel, x, y, strict=True)]
            fig.add_trace(go.Scatter(
                x=[v["value"] for v in x], y=[v["value"] for v in y], mode="markers",
                name=f"{stage} · {attack}" if len(attacks) > 1 else stage,
                marker=dict(color=color, size=11, symbol=SYMBOLS[i % len(SYMBOLS)], line=dict(color="white", width=1)),
                error_x=dict(type="data", symmetric=False, array=[v["high"] - v["value"] for v in x],
                             arrayminus=[v["value"] - v["low"] for v in x], color=color, thickness=1),
                error_y=dict(type="data", symmetric=False, array=[v["high"] - v["value"] for v in y],
                             arrayminus=[v["value"] - v["low"] for v in y], color=color, thickness=1),
                customdata=[[_point_label(r), r.aligned_with, x_["n"], y_["n"]]
                            for r, x_, y_ in zip(sel, x, y, strict=False)],
                hovertemplate="%{customdata[0]} (aligned with %{customdata[1]})<br>HS %{x:.1f}% (n=%{customdata[2]})"
                              "<br>FA %{y:.1f}% (n=%{customdata[3]})<extra>" + attack + "</extra>"))
    width, height = HS_FA_SIZE
    apply_layout(fig, "Defenses against harmful fine-tuning: harm vs fine-tune accuracy",
                 f"{axis_title(hs)} — lower is safer", axis_title(fa) if fa else "fine-tune accuracy (%)",
                 width=width, height=height)
    fig.update_layout(margin=HS_FA_MARGIN, legend=dict(orientation="h", x=0, y=-0.14, yanchor="top"))
    if not rows:
        return fig
    x_range = _data_range([r.rates[hs] for r in rows])
    y_range = _data_range([r.rates[fa] for r in rows])
    fig.update_xaxes(range=x_range)
    fig.update_yaxes(range=y_range)
    plot_size = (width - HS_FA_MARGIN["l"] - HS_FA_MARGIN["r"], height - HS_FA_MARGIN["t"] - HS_FA_MARGIN["b"])
    xs, ys, texts, colors = zip(*labelled, strict=True)
    return add_point_labels(fig, xs, ys, texts, x_range, y_range, plot_size, colors)


BAR_METRICS = ("hs", "hs_plus", "fa", "refusal_benign", "refusal_harmful")


def _row_label(row) -> str:
    """The defense, with what is not evident: the stage of a repair, a non-SFT alignment under a fine-tuning
    defense, and full fine-tuning (the default is LoRA)."""
    label = "sft (baseline)" if row.stage == ALIGNMENT and row.defense == "sft" else row.defense
    if row.stage == FINE_TUNING and row.aligned_with not in ("sft", "—"):
        label += f"<br>on {row.aligned_with}"
    if row.stage == POST_FINE_TUNING:
        label += "<br>(repair)"
    return label + ("<br>full FT" if row.method == "full" else "")


def _attack_panels(board: Board) -> tuple[go.Figure, list[tuple[int, list, list[str]]]]:
    """A figure with one stacked panel per attack, and per panel (row number, its board rows, bar labels):
    defenses are only ever drawn next to others that faced the same attack."""
    attacks = list(dict.fromkeys(_attack_label(r) for r in board.rows))
    fig = make_subplots(rows=len(attacks), cols=1, subplot_titles=attacks,
                        vertical_spacing=0.3 / max(1, len(attacks)))
    panels = []
    for i, attack in enumerate(attacks, start=1):
        sel = [r for r in board.rows if _attack_label(r) == attack]
        labels = [_row_label(r) for r in sel]
        if len(set(labels)) < len(labels):  # several seeds of one defense: keep their bars apart
            labels = [f"{label}<br>seed {r.seed}" for label, r in zip(labels, sel, strict=False)]
        panels.append((i, sel, labels))
    return fig, panels


def plot_bars(board: Board, metrics: tuple[str, ...] = BAR_METRICS) -> go.Figure:
    fa = board.fa_metric()
    keys = [fa if m == "fa" else m for m in metrics if (fa if m == "fa" else m) in board.metrics]
    fig, panels = _attack_panels(board)
    for i, sel, labels in panels:
        for j, key in enumerate(keys):
            vals = [r.rates.get(key) for r in sel]
            fig.add_trace(go.Bar(
                x=labels, y=[v["value"] if v else None for v in vals], name=short_title(key), legendgroup=key,
                showlegend=i == 1, marker_color=PALETTE[j % len(PALETTE)],
                error_y=dict(type="data", symmetric=False, color="#444", thickness=1.2, width=3,
                             array=[v["high"] - v["value"] if v else None for v in vals],
                             arrayminus=[v["value"] - v["low"] if v else None for v in vals]),
                customdata=[[r.stage, v["n"] if v else None] for r, v in zip(sel, vals, strict=False)],
                hovertemplate="%{x} (%{customdata[0]})<br>%{y:.1f}% (n=%{customdata[1]})<extra>" + short_title(key)
                              + "</extra>"), row=i, col=1)
        fig.update_yaxes(title_text="%", range=[0, 105], row=i, col=1)
    most = max((len(sel) for _, sel, _ in panels), default=1)
    width = min(1700, max(760, 18 * len(keys) * most + 200))  # a wide board squeezes bars, not the page
    apply_layout(fig, "Defenses against the same attack: HS, HS+, FA, refusal (95 % intervals)", "", "%",
                 width=width, height=420 * len(panels) + 120)
    fig.update_layout(barmode="group", bargap=0.25, bargroupgap=0.02)
    fig.update_xaxes(tickangle=-35)
    return fig


def plot_metric(board: Board, metric: str) -> go.Figure:
    fig, panels = _attack_panels(board)
    for i, sel, labels in panels:
        for name, rates, color in (("aligned model, before the attack", [r.aligned_rates for r in sel],
                                    MODEL_COLORS["aligned"]),
                                   ("after the attack", [r.rates for r in sel], MODEL_COLORS["attacked"])):
            vals = [rs.get(metric) for rs in rates]
            if not any(vals):
                continue
            fig.add_trace(go.Bar(
                x=labels, y=[v["value"] if v else None for v in vals], name=name, legendgroup=name,
                showlegend=i == 1, marker_color=color,
                text=[f"{v['value']:.0f}%" if v else "" for v in vals], textposition="outside",
                error_y=dict(type="data", symmetric=False, color="#444", thickness=1.5, width=5,
                             array=[v["high"] - v["value"] if v else None for v in vals],
                             arrayminus=[v["value"] - v["low"] if v else None for v in vals]),
                customdata=[v["n"] if v else None for v in vals],
                hovertemplate="%{x}<br>%{y:.1f}% (n=%{customdata})<extra>" + name + "</extra>"), row=i, col=1)
        fig.update_yaxes(title_text="%", range=[0, 110], row=i, col=1)
    most = max((len(sel) for _, sel, _ in panels), default=1)
    apply_layout(fig, f"{short_title(metric)} before and after the attack (95 % intervals)", "", "%",
                 width=min(1500, max(760, 110 * most + 200)), height=380 * len(panels) + 120)
    fig.update_layout(barmode="group")
    fig.update_xaxes(tickangle=-35)
    return fig


def figures(board: Board) -> dict:
    """{name: Figure} of what the board's metrics allow (HS vs FA needs both)."""
    fa = board.fa_metric()
    out = {"bars": plot_bars(board)} if board.rows else {}
    if "hs" in board.metrics and fa is not None:
        out["hs_fa"] = plot_hs_fa(board, "hs", fa)
    return out
