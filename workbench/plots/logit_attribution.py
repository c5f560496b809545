"""Figures of direct logit attribution and the logit lens (`workbench.analysis.logit_attribution`).

    plot_layer_attribution(result)   attention and MLP contributions per layer to the weighted refusal logit
                                     difference, harmful (solid) vs harmless (dotted), one panel per model
    plot_head_attribution(result)    heatmap layer × head of (harmful − harmless) head contributions, per model
    plot_logit_lens(result)          refusal score of resid_post read through the final norm + unembedding
"""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.plots.patching import add_band, layer_grid_layout, layer_ticks, legend_below, model_color, short_name
from workbench.plots.style import PALETTE, apply_layout

DASH = {"harmful": "solid", "harmless": "dot"}


def plot_layer_attribution(result) -> go.Figure:
    M = len(result.labels)
    fig = make_subplots(rows=1, cols=M, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=[short_name(r) for r in result.refs])
    layers = list(range(result.n_layers))
    for m in range(M):
        for k, comp in enumerate(("attn", "mlp")):
            mean, low, high = (getattr(result, f"{comp}{s}")[m] for s in ("", "_low", "_high"))
            for s, name in enumerate(result.sets):
                add_band(fig, layers, mean[s], low[s], high[s], f"{comp} · {name} prompts", PALETTE[k],
                         dash=DASH[name], row=1, col=m + 1, legendgroup=f"{comp}{name}", showlegend=m == 0)
        fig.add_hline(y=0, line=dict(color="#999", width=1), row=1, col=m + 1)
    title = ("Direct logit attribution to the refusal-vs-compliance logit difference<br><sup>last prompt token, "
             f"through the cached final-norm scale; n = {result.n_prompts} prompts per set; bands: 95 % CI</sup>")
    legend_below(apply_layout(fig, title, "", "", width=520 * M + 160, height=640))
    fig.update_layout(margin=dict(t=120))
    fig.update_xaxes(title_text="layer", **layer_ticks(result.n_layers))
    fig.update_yaxes(title_text="contribution to Δ_w (logits)", row=1, col=1)
    return fig


def plot_head_attribution(result) -> go.Figure:
    M = len(result.labels)
    fig = make_subplots(rows=1, cols=M, horizontal_spacing=0.1, subplot_titles=[short_name(r) for r in result.refs])
    diff = result.heads[:, 0] - result.heads[:, 1]  # [M, L, H]
    zmax = float(diff.abs().max()) or 1.0
    for m in range(M):
        fig.add_trace(go.Heatmap(z=diff[m].tolist(), x=list(range(result.n_heads)), y=list(range(result.n_layers)),
                                 colorscale="RdBu", zmin=-zmax, zmax=zmax, showscale=m == M - 1,
                                 colorbar=dict(title="harmful −<br>harmless"),
                                 hovertemplate="layer %{y}, head %{x}<br>%{z:.3f}<extra></extra>"), row=1, col=m + 1)
    title = ("Heads' direct contribution to the refusal logit difference: harmful minus harmless prompts<br>"
             "<sup>z · W_O per head, through the cached final-norm scale</sup>")
    return layer_grid_layout(fig, title, 420 * M + 200, result.n_layers, "head", "layer", top=120, extra_height=200,
                             dtick=1)


def plot_logit_lens(result) -> go.Figure:
    fig = go.Figure()
    layers = list(range(result.n_layers))
    for m, (label, ref) in enumerate(zip(result.labels, result.refs, strict=False)):
        for s, name in enumerate(result.sets):
            add_band(fig, layers, result.lens[m, s], result.lens_low[m, s], result.lens_high[m, s],
                     f"{short_name(ref)} · {name} prompts", model_color(label, m), dash=DASH[name])
    fig.add_hline(y=0, line=dict(color="#999", width=1))
    title = ("Logit lens: refusal logit difference read from each layer's residual stream<br>"
             "<sup>logsumexp(refusal first tokens) − logsumexp(compliance first tokens); "
             f"R = {', '.join(map(repr, result.refusal_tokens))}</sup>")
    return legend_below(apply_layout(fig, title, "layer (hook_resid_post)", "refusal logit difference", width=900,
                                     height=620).update_xaxes(**layer_ticks(result.n_layers)))


def figures(result) -> dict[str, go.Figure]:
    return {"layer_attribution": plot_layer_attribution(result), "head_attribution": plot_head_attribution(result),
            "logit_lens": plot_logit_lens(result)}
