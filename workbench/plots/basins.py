"""Figures of the basin study (`workbench.studies.basins.BasinsResult`).

    plot_correlations(result)        Spearman ρ of each predictor with post-attack HS, with its bootstrap interval
    plot_predictor(result, name)     one point per aligned model: the predictor against post-attack HS, labelled
    plot_random_slices(result)       every model's mean safety over the random directions against α
Pure functions: result in, `go.Figure` out (the result is read by attribute, so this module needs no study import).
"""
from __future__ import annotations

import plotly.graph_objects as go

from workbench.plots.style import PALETTE, publication_layout

HS_AXIS = "post-attack HS (%)"


def plot_correlations(result) -> go.Figure:
    preds = [p for p in result.predictors if p.correlation.rho is not None]
    rho = [p.correlation.rho for p in preds]
    lo = [p.correlation.rho - p.correlation.low if p.correlation.low is not None else 0 for p in preds]
    hi = [p.correlation.high - p.correlation.rho if p.correlation.high is not None else 0 for p in preds]
    labels = [f"{p.title} (n = {p.correlation.n})" for p in preds]
    fig = go.Figure(go.Bar(x=rho, y=labels, orientation="h", marker_color=[PALETTE[0] if r < 0 else PALETTE[1]
                                                                            for r in rho],
                           error_x=dict(type="data", symmetric=False, array=hi, arrayminus=lo, color="#333"),
                           hovertemplate="%{y}<br>ρ = %{x:.2f}<extra></extra>"))
    fig.add_vline(x=0, line=dict(color="#555", width=1))
    level = f"{result.spec.level:.0%}"
    fig.update_xaxes(title_text=f"Spearman ρ with post-attack HS ({level} bootstrap interval over models)",
                     range=[-1.05, 1.05])
    fig.update_yaxes(autorange="reversed")
    return publication_layout(fig, "Which measure of the aligned model predicts post-attack HS?", 900,
                              120 + 45 * max(len(preds), 1), right=40, top=70)


def plot_predictor(result, name: str) -> go.Figure:
    pred = next(p for p in result.predictors if p.name == name)
    pts = [(v, h, lab) for v, h, lab in zip(pred.values, result.hs, result.labels, strict=True) if v is not None]
    fig = go.Figure(go.Scatter(x=[v for v, _, _ in pts], y=[h for _, h, _ in pts], text=[lab for _, _, lab in pts],
                               mode="markers+text", textposition="top center", marker=dict(size=10, color=PALETTE[0]),
                               hovertemplate="%{text}<br>%{x:.3f}, HS %{y:.1f} %<extra></extra>"))
    c = pred.correlation
    stat = ("ρ undefined: " + c.note) if c.rho is None else (
        f"Spearman ρ = {c.rho:+.2f}" + (f" [{c.low:+.2f}, {c.high:+.2f}]" if c.low is not None else "")
        + f", n = {c.n}")
    fig.update_xaxes(title_text=pred.title)
    fig.update_yaxes(title_text=HS_AXIS)
    return publication_layout(fig, f"{pred.title} vs post-attack HS — {stat}", 820, 520, right=40, top=80)


def plot_random_slices(result) -> go.Figure:
    fig = go.Figure()
    for k, m in enumerate(result.models):
        alphas = m.random[0].alphas
        mean = [sum(s.safety[i] for s in m.random) / len(m.random) for i in range(len(alphas))]
        fig.add_trace(go.Scatter(x=alphas, y=mean, mode="lines+markers", name=f"{m.label} (HS {m.hs:.0f} %)",
                                 line=dict(color=PALETTE[k % len(PALETTE)], width=2)))
    fig.add_hline(y=result.spec.measure.threshold, line=dict(color="#555", dash="dash", width=1))
    fig.update_xaxes(title_text=f"α along a random direction ({result.spec.measure.normalization}-normalised)")
    fig.update_yaxes(title_text="probe safety, mean over directions", range=[-0.03, 1.03])
    return publication_layout(fig, f"Safety basins of the aligned models ({len(result.direction_seeds)} shared "
                                   f"random directions)", 900, 520, right=40, top=70)


def figures(result) -> dict[str, go.Figure]:
    out = {"correlations": plot_correlations(result)} if any(p.correlation.rho is not None
                                                             for p in result.predictors) else {}
    if result.models:
        out["random_slices"] = plot_random_slices(result)
    for p in result.predictors:
        if any(v is not None for v in p.values):
            out[f"scatter_{p.name}"] = plot_predictor(result, p.name)
    return out
