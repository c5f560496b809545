"""Figures of harmful-parameter location (`workbench.analysis.wanda.WandaResult`).

    plot_density(result)     heatmap layer × module: share of each weight matrix in the set-difference mask
    plot_overlap(result)     heatmap: share of the top-q safety weights that are also top-p utility weights
    plot_pruning(result)     refusal / HS and utility NLL: unpruned vs set-difference vs random pruning
"""
from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.plots.style import publication_layout


def _publication(fig: go.Figure, title: str, width: int = 760, height: int = 520) -> go.Figure:
    return publication_layout(fig, title, width, height, right=70, top=70)


def _heatmap(result, z, title: str, cbar: str, colorscale: str) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=(100 * z).tolist(), x=result.module_types, y=[str(layer) for layer in result.layers],
                               colorscale=colorscale, colorbar=dict(title=dict(text=cbar, side="right")),
                               hovertemplate="layer %{y}, %{x}: %{z:.2f}%<extra></extra>"))
    fig.update_xaxes(title_text="module")
    fig.update_yaxes(title_text="layer", autorange="reversed", type="category")
    return _publication(fig, title, width=640, height=max(420, 60 + 16 * len(result.layers)))


def plot_density(result) -> go.Figure:
    title = (f"Safety-critical weights ({result.score}): top {100 * result.q:g}% safety \\ top "
             f"{100 * result.p:g}% utility — {100 * result.n_masked / max(result.n_weights, 1):.2f}% of weights")
    return _heatmap(result, result.density, title, "% of matrix", "Viridis")


def plot_overlap(result) -> go.Figure:
    return _heatmap(result, result.overlap, "Overlap of safety- and utility-critical weights",
                    "% of top-q safety also top-p utility", "Blues")


def plot_pruning(result) -> go.Figure:
    ev = result.evaluation
    conds = list(ev)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("safety on held-out harmful prompts", "utility"),
                        horizontal_spacing=0.14)
    colors = {"refusal": "#1f77b4", "harmful": "#d62728"}
    for key, label in (("refusal", "refusal rate (keyword)"), ("harmful", "harmful score HS (judge)")):
        vals = [ev[c][key] for c in conds]
        if all(v is None or (isinstance(v, float) and math.isnan(v)) for v in vals):
            continue
        fig.add_trace(go.Bar(x=conds, y=[100 * v for v in vals], name=label, marker_color=colors[key],
                             text=[f"{100 * v:.0f}%" for v in vals], textposition="outside"), row=1, col=1)
    fig.add_trace(go.Bar(x=conds, y=[ev[c]["utility_nll"] for c in conds], name="answer NLL on Alpaca (↓)",
                         marker_color="#7f7f7f", text=[f"{ev[c]['utility_nll']:.2f}" for c in conds],
                         textposition="outside"), row=1, col=2)
    fig.update_yaxes(title_text="%", range=[0, 110], row=1, col=1)
    fig.update_yaxes(title_text="nats / answer token", row=1, col=2)
    fig.update_layout(barmode="group")
    n = ev.get("set_difference", {}).get("n_zeroed", 0)
    return _publication(fig, f"Pruning {n:,} weights: set difference vs random (same modules, same count)",
                        width=980, height=500)


def figures(result) -> dict[str, go.Figure]:
    out = {"wanda_density": plot_density(result), "wanda_overlap": plot_overlap(result)}
    if result.evaluation:
        out["wanda_pruning"] = plot_pruning(result)
    return out
