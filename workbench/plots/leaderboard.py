"""Figures of the defense leaderboard (`workbench.leaderboard.Leaderboard`).

    plot_hs_fa(board)   HS (x) vs FA (y), one marker per attacked model with 95 % error bars both ways;
                        colour = defense stage, symbol = attack; the good corner is top left
"""
from __future__ import annotations

import plotly.graph_objects as go

from workbench.plots.style import PALETTE, apply_layout

STAGE_COLORS = {"none": "#7f7f7f", "alignment": PALETTE[0], "fine-tuning": PALETTE[1], "post-fine-tuning": PALETTE[2]}
SYMBOLS = ["circle", "square", "diamond", "triangle-up", "cross", "x", "star", "hexagon"]


def _attack_label(row) -> str:
    return row.attack if row.p is None else f"{row.attack} p={row.p:g}"


def plot_hs_fa(board, hs: str = "hs", fa: str | None = None) -> go.Figure:
    fa = fa or board.fa_metric()
    rows = [r for r in board.rows if hs in r.rates and fa in r.rates]
    attacks = list(dict.fromkeys(_attack_label(r) for r in rows))
    fig = go.Figure()
    for stage, color in STAGE_COLORS.items():
        for i, attack in enumerate(attacks):
            sel = [r for r in rows if r.stage == stage and _attack_label(r) == attack]
            if not sel:
                continue
            x, y = [r.rates[hs] for r in sel], [r.rates[fa] for r in sel]
            fig.add_trace(go.Scatter(
                x=[v["value"] for v in x], y=[v["value"] for v in y], mode="markers+text",
                name=f"{stage} · {attack}" if len(attacks) > 1 else stage, text=[r.defense for r in sel],
                textposition="top center", marker=dict(color=color, size=11, symbol=SYMBOLS[i % len(SYMBOLS)],
                                                        line=dict(color="white", width=1)),
                error_x=dict(type="data", symmetric=False, array=[v["high"] - v["value"] for v in x],
                             arrayminus=[v["value"] - v["low"] for v in x], color=color, thickness=1),
                error_y=dict(type="data", symmetric=False, array=[v["high"] - v["value"] for v in y],
                             arrayminus=[v["value"] - v["low"] for v in y], color=color, thickness=1),
                customdata=[[r.defense, r.aligned_with, x_["n"], y_["n"]] for r, x_, y_ in zip(sel, x, y)],
                hovertemplate="%{customdata[0]} (aligned with %{customdata[1]})<br>HS %{x:.1f}% (n=%{customdata[2]})"
                              "<br>FA %{y:.1f}% (n=%{customdata[3]})<extra>" + attack + "</extra>"))
    apply_layout(fig, "Defenses against harmful fine-tuning: harm vs fine-tune accuracy",
                 "harmful score HS (%) — lower is safer", f"fine-tune accuracy {fa[3:] if fa else ''} (%)",
                 width=860, height=560)
    fig.update_xaxes(range=[-3, 103])
    fig.update_yaxes(range=[-3, 103])
    return fig


def figures(board) -> dict:
    """{name: Figure} of what the board's metrics allow (HS vs FA needs both)."""
    fa = board.fa_metric()
    if "hs" not in board.metrics or fa is None:
        return {}
    return {"hs_fa": plot_hs_fa(board, "hs", fa)}
