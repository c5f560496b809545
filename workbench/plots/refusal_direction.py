"""Figures of the refusal direction (`workbench.analysis.refusal_direction`). Pure: result in, Figure out.

    plot_selection(result)           bypass / induce / KL scores over candidate position × layer, selected marked
    plot_direction_norms(result)     ‖r‖ per layer for each post-instruction position
    plot_refusal_signal(result)      projection on each layer's last-token r̂, harmful vs harmless, per model
    plot_refusal_signal_selected(r)  projection on the selected r̂ at every layer
    plot_interventions(result)       refusal rates (Wilson 95 % CI) without/with ablation and addition
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.plots.patching import add_band, layer_grid_layout, layer_ticks, legend_below, model_color, short_name
from workbench.plots.style import PALETTE, apply_layout

DASH = {0: "solid", 1: "dot"}
SETS = ("harmful", "harmless")
CONDITIONS = {"harmful_baseline": "harmful", "harmful_ablated": "harmful, r̂ ablated",
              "harmful_added": "harmful, r added", "harmless_baseline": "harmless",
              "harmless_added": "harmless, r added", "harmless_ablated": "harmless, r̂ ablated"}


def plot_selection(result) -> go.Figure:
    panels = (("bypass", "refusal score, r̂ ablated (harmful)", "RdBu_r"),
              ("induce", "refusal score, r added (harmless)", "RdBu_r"),
              ("kl", "KL(base ‖ ablated) on harmless", "Viridis"))
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.09, subplot_titles=[p[1] for p in panels])
    sel = result.selected
    for j, (field, _, scale) in enumerate(panels, start=1):
        z = getattr(result, field).numpy().astype(float)
        z = np.where(np.isfinite(z), z, np.nan)
        kw = dict(zmid=0) if scale == "RdBu_r" else {}
        fig.add_trace(go.Heatmap(z=z.T.tolist(), x=result.position_labels, y=list(range(result.n_layers)),
                                 colorscale=scale, colorbar=dict(x=0.28 + 0.36 * (j - 1), len=0.8), **kw,
                                 hovertemplate="layer %{y}, position %{x}<br>%{z:.3f}<extra></extra>"), row=1, col=j)
        fig.add_trace(go.Scatter(x=[result.position_labels[sel["position_index"]]], y=[sel["layer"]], mode="markers",
                                 marker=dict(symbol="star", size=16, color="#F0E442",
                                             line=dict(color="black", width=1)),
                                 name="selected", showlegend=False), row=1, col=j)
    status = "passed both filters" if sel["passed_filters"] else "no candidate passed the filters"
    title = (f"Selecting the refusal direction (Arditi et al. 2024): layer {sel['layer']}, position {sel['position']}"
             f"<br><sup>lowest refusal score under ablation among candidates with induce > 0 and KL ≤ threshold "
             f"({status}); ★ = selected; blank = not evaluated</sup>")
    return layer_grid_layout(fig, title, 1350, result.n_layers, "post-instruction position", "layer (resid_pre)",
                             top=130, extra_height=220, tickangle=45)


def plot_direction_norms(result) -> go.Figure:
    fig = go.Figure()
    norms = result.directions.norm(dim=-1)  # [P, L]
    for i, label in enumerate(result.position_labels):
        fig.add_trace(go.Scatter(x=list(range(result.n_layers)), y=norms[i].tolist(), mode="lines+markers",
                                 name=label, line=dict(color=PALETTE[i % len(PALETTE)], width=2)))
    title = "Norm of the difference in means (harmful − harmless) per layer and post-instruction position"
    return legend_below(apply_layout(fig, title, "layer (resid_pre)", "‖r‖", width=900, height=560).update_xaxes(
        **layer_ticks(result.n_layers)))


def _signal(result, prefix: str, title: str) -> go.Figure:
    fig = go.Figure()
    layers = list(range(result.n_layers))
    refs = [result.model, result.compare]
    mean, low, high = (getattr(result, f"{prefix}{s}") for s in ("", "_low", "_high"))
    for m, label in enumerate(result.labels):
        for s, name in enumerate(SETS):
            add_band(fig, layers, mean[m, s], low[m, s], high[m, s], f"{short_name(refs[m])} · {name} prompts",
                     model_color(label, m), dash=DASH[s])
    fig.add_hline(y=0, line=dict(color="#999", width=1))
    return legend_below(apply_layout(fig, title, "layer (hook_resid_pre, last prompt token)",
                                     "projection on r̂ (aligned model)", width=900, height=620
                                     ).update_xaxes(**layer_ticks(result.n_layers)))


def plot_refusal_signal(result) -> go.Figure:
    return _signal(result, "signal", "Refusal signal: last-token activations projected on the aligned model's "
                                     "per-layer refusal direction<br><sup>held-out prompts; bands: bootstrap 95 % CI"
                                     "</sup>")


def plot_refusal_signal_selected(result) -> go.Figure:
    sel = result.selected
    return _signal(result, "signal_selected", f"Refusal signal on the selected direction (layer {sel['layer']}, "
                                              f"position {sel['position']}) at every layer<br><sup>held-out prompts; "
                                              "bands: bootstrap 95 % CI</sup>")


def plot_interventions(result) -> go.Figure:
    fig = go.Figure()
    refs = [result.model, result.compare]
    for m, label in enumerate(result.generation):
        conds = {c: v for c, v in result.generation[label].items() if isinstance(v, dict) and "value" in v}
        names = [CONDITIONS.get(c, c) for c in conds]
        values = [v["value"] for v in conds.values()]
        fig.add_trace(go.Bar(x=names, y=values, name=short_name(refs[result.labels.index(label)]),
                             marker_color=model_color(label, m),
                             error_y=dict(type="data", symmetric=False,
                                          array=[v["high"] - v["value"] for v in conds.values()],
                                          arrayminus=[v["value"] - v["low"] for v in conds.values()]),
                             text=[f"{v:.0f}%" for v in values], textposition="inside", insidetextanchor="start",
                             showlegend=True))
    sel = result.selected
    fig.update_yaxes(range=[0, 110])
    fig.update_layout(barmode="group")
    title = (f"Refusal rate under directional ablation / activation addition (layer {sel['layer']})<br>"
             "<sup>keyword refusal on held-out prompts, greedy decoding; error bars: Wilson 95 % CI</sup>")
    return legend_below(apply_layout(fig, title, "condition", "refusal rate (%)", width=900, height=600))


def figures(result) -> dict[str, go.Figure]:
    out = {"selection": plot_selection(result), "direction_norms": plot_direction_norms(result),
           "refusal_signal": plot_refusal_signal(result),
           "refusal_signal_selected": plot_refusal_signal_selected(result)}
    if result.generation:
        out["interventions"] = plot_interventions(result)
    return out
