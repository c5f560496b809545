"""Figures of embedding drift (`workbench.analysis.drift`).

    plot_layer_drift(result)        DriftResult: L2 and cosine distance per layer (two panels)
    plot_drift_vs_step(result)      DriftSweepResult: drift vs step (top) above refusal / HS vs step (bottom),
                                    one colour per harmful ratio p
    plot_drift_vs_safety(result)    DriftSweepResult: every (p, step) checkpoint, drift vs refusal
    plot_drift_heatmap(result)      DriftSweepResult: layer × step drift at the largest p
"""
from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.plots.style import publication_layout

COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def _publication(fig: go.Figure, title: str, width: int = 760, height: int = 480) -> go.Figure:
    return publication_layout(fig, title, width, height, right=40, top=80)


def plot_layer_drift(result) -> go.Figure:
    layers = list(range(len(result.l2)))
    fig = make_subplots(rows=1, cols=2, subplot_titles=("L2 distance", "cosine distance"), horizontal_spacing=0.12)
    fig.add_trace(go.Scatter(x=layers, y=result.l2.tolist(), mode="lines+markers", name="‖h′ − h‖₂",
                             line=dict(color=COLORS[0], width=2.5)), row=1, col=1)
    fig.add_trace(go.Scatter(x=layers, y=result.cosine.tolist(), mode="lines+markers", name="1 − cos(h, h′)",
                             line=dict(color=COLORS[3], width=2.5)), row=1, col=2)
    fig.update_xaxes(title_text="layer (0 = embeddings)")
    fig.update_yaxes(title_text="mean over tokens", row=1, col=1)
    return _publication(fig, f"Hidden-state drift on alignment data (rel. L2, mean over blocks: "
                             f"{float(result.rel_l2[1:].mean()):.3f})", width=980, height=440)


def _safety_series(result):
    h = result.harmful
    if not all(math.isnan(v) for v in h.reshape(-1).tolist()):
        return h, "harmful score HS (%)"
    return result.refusal, "refusal rate (%)"


def _has_judge(result) -> bool:
    return not all(math.isnan(v) for v in result.harmful.reshape(-1).tolist())


def plot_drift_vs_step(result) -> go.Figure:
    panels = [("drift of hidden states (mean rel. L2 over blocks)", result.drift, "rel. L2", 1.0),
              ("refusal rate on held-out harmful prompts (keyword)", result.refusal, "%", 100.0)]
    if _has_judge(result):
        panels.append(("harmful score HS (judge)", result.harmful, "%", 100.0))
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=[t for t, *_ in panels])
    for row, (_, values, unit, scale) in enumerate(panels, start=1):
        for i, p in enumerate(result.ps):
            fig.add_trace(go.Scatter(x=result.steps, y=(scale * values[i]).tolist(), mode="lines+markers",
                                     name=f"p = {p:g}", legendgroup=str(p), showlegend=row == 1,
                                     line=dict(color=COLORS[i % len(COLORS)], width=2.5,
                                               dash="solid" if row == 1 else "dot")), row=row, col=1)
        fig.update_yaxes(title_text=unit, row=row, col=1, **({"range": [-3, 103]} if unit == "%" else {}))
    fig.update_xaxes(title_text="fine-tuning step", row=len(panels), col=1)
    rho = result.correlations.get("spearman_drift_refusal")
    title = "Drift and safety during harmful fine-tuning"
    if rho == rho:
        title += f" (Spearman ρ drift–refusal = {rho:.2f})"
    fig = _publication(fig, title, width=820, height=300 + 250 * len(panels))
    return fig.update_layout(legend=dict(y=-0.1), margin=dict(b=110))  # tall figure: legend closer to the axis


def plot_drift_vs_safety(result) -> go.Figure:
    safety, label = _safety_series(result)
    fig = go.Figure()
    for i, p in enumerate(result.ps):
        fig.add_trace(go.Scatter(x=result.drift[i].tolist(), y=(100 * safety[i]).tolist(), mode="markers+lines",
                                 name=f"p = {p:g}", text=[f"step {s}" for s in result.steps],
                                 marker=dict(size=9, color=COLORS[i % len(COLORS)]),
                                 line=dict(width=1, color=COLORS[i % len(COLORS)])))
    fig.update_xaxes(title_text="drift (mean rel. L2 over blocks)")
    fig.update_yaxes(title_text=label, range=[-3, 103])
    return _publication(fig, "Safety vs drift at every checkpoint")


def plot_drift_heatmap(result) -> go.Figure:
    i = max(range(len(result.ps)), key=lambda k: result.ps[k])
    z = result.rel_l2[i].T.tolist()  # [layers, steps]
    fig = go.Figure(go.Heatmap(z=z, x=[str(s) for s in result.steps], y=list(range(len(z))), colorscale="Magma",
                               colorbar=dict(title=dict(text="rel. L2", side="right"))))
    fig.update_xaxes(title_text="fine-tuning step", type="category")
    fig.update_yaxes(title_text="layer (0 = embeddings)")
    return _publication(fig, f"Drift by layer and step (p = {result.ps[i]:g})", width=720, height=560)


def figures(result) -> dict[str, go.Figure]:
    if hasattr(result, "ps"):
        return {"drift_vs_step": plot_drift_vs_step(result), "drift_vs_safety": plot_drift_vs_safety(result),
                "drift_heatmap": plot_drift_heatmap(result)}
    return {"drift_layers": plot_layer_drift(result)}
