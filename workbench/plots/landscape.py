"""Figures of the VISAGE safety landscape (`workbench.analysis.landscape.LandscapeResult`).

    plot_slice_1d(result)   safety (and the first-token log-odds proxy, right axis) vs α per direction,
                            with the threshold and the basin shaded
    plot_line(result)       safety along aligned (α = 0) → attacked (α = 1) and beyond
    plot_contour(result)    2D grid: safety contour map with colorbar, basin outlined by the threshold level
    plot_surface(result)    2D grid as a 3D surface
Pure functions: result in, `go.Figure` out; export with `workbench.plots.export`.
"""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.plots.style import publication_layout

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _publication(fig: go.Figure, title: str, width: int = 760, height: int = 480) -> go.Figure:
    return publication_layout(fig, title, width, height, right=70, top=70)


def _metric_label(metric: str) -> str:
    return {"keyword": "safety = 1 − ASR (keyword refusal)", "judge": "safety = 1 − HS (judge)",
            "proxy": "safety (share with refusal log-odds > 0)"}.get(metric, "safety")


def plot_slice_1d(result) -> go.Figure:
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    a = result.alphas.tolist()
    for k, (s, lo) in enumerate(zip(result.safety_1d, result.logodds_1d, strict=False)):
        c = COLORS[k % len(COLORS)]
        fig.add_trace(go.Scatter(x=a, y=s.tolist(), mode="lines+markers", name=f"safety, direction {k + 1}",
                                 line=dict(color=c, width=2.5), marker=dict(size=6)), secondary_y=False)
        fig.add_trace(go.Scatter(x=a, y=lo.tolist(), mode="lines", name=f"refusal log-odds, direction {k + 1}",
                                 line=dict(color=c, width=1.5, dash="dot")), secondary_y=True)
    lo_b, hi_b = result.basin_1d[0]
    fig.add_vrect(x0=lo_b, x1=hi_b, fillcolor="#2ca02c", opacity=0.08, line_width=0,
                  annotation_text="basin (dir. 1)", annotation_position="bottom left")
    fig.add_hline(y=result.threshold, line=dict(color="#555", dash="dash", width=1),
                  annotation_text=f"threshold {result.threshold:g}", annotation_position="bottom right")
    fig.update_xaxes(title_text="α (perturbation along random direction, ‖d‖ = ‖W‖ per tensor)")
    fig.update_yaxes(title_text=_metric_label(result.metric), range=[-0.03, 1.03], secondary_y=False)
    fig.update_yaxes(title_text="first-token refusal log-odds", secondary_y=True, showgrid=False)
    title = f"Safety landscape, 1D slice — VISAGE {result.visage_1d:.3f} (n = {result.n_prompts} prompts)"
    return _publication(fig, title)


def plot_line(result) -> go.Figure:
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    a = result.line_alphas.tolist()
    fig.add_trace(go.Scatter(x=a, y=result.line_safety.tolist(), mode="lines+markers", name="safety",
                             line=dict(color=COLORS[0], width=2.5)), secondary_y=False)
    fig.add_trace(go.Scatter(x=a, y=result.line_logodds.tolist(), mode="lines", name="refusal log-odds",
                             line=dict(color=COLORS[1], width=1.5, dash="dot")), secondary_y=True)
    for x, label in ((0.0, "aligned"), (1.0, "attacked")):
        fig.add_vline(x=x, line=dict(color="#555", dash="dash", width=1), annotation_text=label,
                      annotation_position="top")
    fig.update_xaxes(title_text="α along θ_aligned + α·(θ_attacked − θ_aligned)")
    fig.update_yaxes(title_text=_metric_label(result.metric), range=[-0.03, 1.03], secondary_y=False)
    fig.update_yaxes(title_text="first-token refusal log-odds", secondary_y=True, showgrid=False)
    return _publication(fig, f"Aligned → attacked interpolation (n = {result.n_prompts} prompts)")


def plot_contour(result) -> go.Figure:
    g = result.grid.tolist()
    fig = go.Figure(go.Contour(
        x=g, y=g, z=result.safety_2d.tolist(), zmin=0, zmax=1, colorscale="RdYlGn",
        contours=dict(start=0, end=1, size=0.1, showlabels=True, labelfont=dict(size=11, color="#222")),
        colorbar=dict(title=dict(text="safety", side="right")), name="safety"))
    fig.add_trace(go.Contour(x=g, y=g, z=result.safety_2d.tolist(), showscale=False, name="threshold",
                             contours=dict(coloring="none", start=result.threshold, end=result.threshold, size=1),
                             line=dict(color="black", width=2.5, dash="dash"), showlegend=True))
    fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers", marker=dict(symbol="star", size=14, color="black"),
                             name="model (α = β = 0)"))
    fig.update_xaxes(title_text="α (direction 1)", constrain="domain")
    fig.update_yaxes(title_text="β (direction 2)", scaleanchor="x", constrain="domain")
    title = f"Safety landscape, 2D — VISAGE {result.visage_2d:.3f}, basin {100 * result.basin_2d_fraction:.0f}% of grid"
    return _publication(fig, title, width=680, height=600)


def plot_surface(result) -> go.Figure:
    g = result.grid.tolist()
    fig = go.Figure(go.Surface(x=g, y=g, z=result.safety_2d.tolist(), cmin=0, cmax=1, colorscale="RdYlGn",
                               colorbar=dict(title=dict(text="safety", side="right"), len=0.7),
                               contours=dict(z=dict(show=True, usecolormap=True, project_z=True))))
    fig.update_layout(scene=dict(xaxis_title="α (direction 1)", yaxis_title="β (direction 2)",
                                 zaxis=dict(title="safety", range=[0, 1]),
                                 aspectmode="manual", aspectratio=dict(x=1, y=1, z=0.7),
                                 camera=dict(eye=dict(x=1.5, y=-1.5, z=1.0))))
    fig = _publication(fig, f"Safety landscape, 3D surface — VISAGE {result.visage_2d:.3f}", width=800, height=700)
    return fig.update_layout(margin=dict(l=10, r=10, t=70, b=10))


def figures(result) -> dict[str, go.Figure]:
    out = {}
    if result.safety_1d is not None:
        out["landscape_1d"] = plot_slice_1d(result)
    if result.line_safety is not None:
        out["landscape_line"] = plot_line(result)
    if result.safety_2d is not None:
        out["landscape_2d_contour"] = plot_contour(result)
        out["landscape_2d_surface"] = plot_surface(result)
    return out
