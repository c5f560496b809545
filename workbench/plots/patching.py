"""Figures of activation patching (`workbench.analysis.patching`). Pure: result in, plotly Figure out.

    plot_layer_curves(result, exp)      normalized effect per layer of resid / attn / mlp, 95 % bands
    plot_layer_position(result, exp)    heatmap layer × position (resid_post patched at one position)
    plot_heads(result, exp)             heatmap layer × head (hook_z patched per head)
    plot_windows(result, exp)           normalized effect of patching attn+mlp of a window of layers
    plot_cross_overview(result)         resid curves of every across-model experiment on one axis
    plot_attack_comparison(comparison)  EHA vs ISA restoration curves and their paired difference

Shared helpers for the other refusal figures: `add_band`, `short_name`, `model_color`, `layer_ticks`.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.analysis.patching import AttackComparison
from workbench.plots.style import MODEL_COLORS, PALETTE, apply_layout

COMPONENT_NAMES = {"resid": "residual stream (hook_resid_post)", "attn": "attention output (hook_attn_out)",
                   "mlp": "MLP output (hook_mlp_out)"}
EXPERIMENT_TITLES = {
    "harmful_into_harmless": "harmful-prompt activations patched into harmless-prompt runs",
    "harmless_into_harmful": "harmless-prompt activations patched into harmful-prompt runs",
    "aligned_into_attacked": "aligned-model activations patched into the attacked model (same harmful prompts)",
    "attacked_into_aligned": "attacked-model activations patched into the aligned model (same harmful prompts)",
    "aligned_into_isa": "aligned-model activations patched into the identity-shift-attacked model",
}
NORMALIZED_AXIS = "normalized effect (P − T) / (S − T)"  # heatmaps saturate at ±1 (hover shows the value)


def short_name(ref: str | None) -> str:
    """A readable label for a model reference: registered names as is, folders by their last part without the
    run timestamp ("runs/align-sft-20261124-224322" -> "align-sft"; ".../run/model" -> the run's name)."""
    if ref is None:
        return "?"
    p = Path(ref)
    name = p.parent.name if p.name == "model" else p.name
    return re.sub(r"-\d{8}-\d{6}$", "", name) or str(ref)


def legend_below(fig: go.Figure, height: int | None = None) -> go.Figure:
    """Horizontal legend under the plot (long model names would otherwise squeeze the axes)."""
    fig.update_layout(legend=dict(orientation="h", x=0, xanchor="left", y=-0.18, yanchor="top"),
                      margin=dict(b=150), **({"height": height} if height else {}))
    return fig


def model_color(label: str, i: int = 0) -> str:
    return {"model": MODEL_COLORS["aligned"], "compare": MODEL_COLORS["attacked"]}.get(label, PALETTE[i % len(PALETTE)])


def layer_ticks(n: int) -> dict:
    """Integer ticks for a layer axis of n layers (every layer up to 12, then every 2nd / 5th)."""
    return dict(tickmode="linear", tick0=0, dtick=1 if n <= 12 else 2 if n <= 30 else 5, range=[-0.5, n - 0.5])


def layer_grid_layout(fig: go.Figure, title: str, width: int, n_layers: int, x_title: str, y_title: str,
                      top: int, extra_height: int, **xaxes) -> go.Figure:
    """House layout of a row of layer × something heatmaps: two-line title, a height that grows with the
    number of layers, layer ticks on every panel, the y title on the first."""
    apply_layout(fig, title, "", "", width=width, height=max(top + 370, 16 * n_layers + extra_height))
    fig.update_layout(margin=dict(t=top))
    fig.update_xaxes(title_text=x_title, **xaxes)
    fig.update_yaxes(**layer_ticks(n_layers))
    fig.update_yaxes(title_text=y_title, row=1, col=1)
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def add_band(fig: go.Figure, x, mean, low, high, name: str, color: str, dash: str = "solid", row=None, col=None,
             legendgroup: str | None = None, showlegend: bool = True) -> go.Figure:
    """A line with a shaded 95 % interval band (the band has no legend entry of its own)."""
    x, mean, low, high = (np.asarray(v, dtype=float).tolist() for v in (x, mean, low, high))
    kw = dict(row=row, col=col) if row is not None else {}
    group = legendgroup or name
    fig.add_trace(go.Scatter(x=x + x[::-1], y=high + low[::-1], fill="toself", fillcolor=_rgba(color, 0.18),
                             mode="lines", line=dict(width=0), hoverinfo="skip", showlegend=False,
                             legendgroup=group), **kw)
    fig.add_trace(go.Scatter(x=x, y=mean, mode="lines+markers", name=name, legendgroup=group, showlegend=showlegend,
                             line=dict(color=color, width=2.5, dash=dash), marker=dict(size=6)), **kw)
    return fig


def _subtitle(result, name: str) -> str:
    exp = result.experiments[name]
    return (f"S = {exp['source_mean']:.2f}, T = {exp['target_mean']:.2f} (refusal logit difference), "
            f"n = {exp['n']} prompts, patched positions: {exp['patched_positions']}")


def plot_layer_curves(result, experiment: str) -> go.Figure:
    exp = result.experiments[experiment]
    fig = go.Figure()
    for i, comp in enumerate(c for c in ("resid", "attn", "mlp") if c in exp["components"]):
        s = exp["components"][comp]
        add_band(fig, range(result.n_layers), s["normalized"], s["low"], s["high"], COMPONENT_NAMES[comp],
                 PALETTE[i])
    fig.add_hline(y=0, line=dict(color="#999", width=1))
    fig.add_hline(y=1, line=dict(color="#999", width=1, dash="dot"))
    title = (f"Patching: {EXPERIMENT_TITLES.get(experiment, experiment)}<br>"
             f"<sup>{_subtitle(result, experiment)}; bands: bootstrap 95 % CI</sup>")
    return legend_below(apply_layout(fig, title, "layer", NORMALIZED_AXIS, width=900, height=600).update_xaxes(
        **layer_ticks(result.n_layers)))


def plot_layer_position(result, experiment: str) -> go.Figure:
    s = result.experiments[experiment]["components"]["resid_pos"]
    z = np.array(s["normalized"], dtype=float)  # [L, K]
    fig = go.Figure(go.Heatmap(z=z, x=result.position_labels, y=list(range(result.n_layers)), colorscale="RdBu",
                               zmin=-1, zmax=1, colorbar=dict(title="normalized<br>effect"),
                               hovertemplate="layer %{y}, position %{x}<br>normalized %{z:.2f}<extra></extra>"))
    title = (f"Residual stream patched at one layer and position<br>"
             f"<sup>{EXPERIMENT_TITLES.get(experiment, experiment)}</sup>")
    return apply_layout(fig, title, "position (offset from the end, token)", "layer", width=760,
                        height=max(420, 18 * result.n_layers + 160)).update_yaxes(**layer_ticks(result.n_layers))


def plot_heads(result, experiment: str) -> go.Figure:
    s = result.experiments[experiment]["components"]["heads"]
    z = np.array(s["normalized"], dtype=float)  # [L, H]
    fig = go.Figure(go.Heatmap(z=z, x=list(range(result.n_heads)), y=list(range(result.n_layers)), colorscale="RdBu",
                               zmin=-1, zmax=1, colorbar=dict(title="normalized<br>effect"),
                               hovertemplate="layer %{y}, head %{x}<br>normalized %{z:.2f}<extra></extra>"))
    title = (f"Attention heads patched one at a time (hook_z)<br>"
             f"<sup>{EXPERIMENT_TITLES.get(experiment, experiment)}</sup>")
    return apply_layout(fig, title, "head", "layer", width=640, height=max(420, 18 * result.n_layers + 160)
                        ).update_yaxes(**layer_ticks(result.n_layers)).update_xaxes(dtick=1)


def plot_windows(result, experiment: str) -> go.Figure:
    s = result.experiments[experiment]["components"]["window"]
    starts = list(range(len(s["normalized"])))
    fig = go.Figure()
    add_band(fig, starts, s["normalized"], s["low"], s["high"], f"attn + MLP of layers L..L+{result.window - 1}",
             PALETTE[0])
    fig.add_hline(y=0.5, line=dict(color="#D55E00", width=1, dash="dash"), annotation_text="50 %")
    fig.add_hline(y=0, line=dict(color="#999", width=1))
    title = (f"Patching a window of {result.window} layers (attention + MLP outputs)<br>"
             f"<sup>{EXPERIMENT_TITLES.get(experiment, experiment)}<br>{_subtitle(result, experiment)}</sup>")
    fig = legend_below(apply_layout(fig, title, "first layer L of the window", NORMALIZED_AXIS, width=900,
                                    height=600).update_xaxes(**layer_ticks(result.n_layers)))
    return fig.update_layout(margin=dict(t=100))


def plot_cross_overview(result) -> go.Figure:
    fig = go.Figure()
    names = [n for n in ("aligned_into_attacked", "attacked_into_aligned", "aligned_into_isa")
             if n in result.experiments and "resid" in result.experiments[n]["components"]]
    for i, name in enumerate(names):
        s = result.experiments[name]["components"]["resid"]
        add_band(fig, range(result.n_layers), s["normalized"], s["low"], s["high"], name.replace("_", " "),
                 PALETTE[i])
    fig.add_hline(y=0.5, line=dict(color="#999", width=1, dash="dash"))
    title = (f"Across models: residual stream patched per layer<br><sup>aligned = {short_name(result.model)}, "
             f"attacked = {short_name(result.compare)}</sup>")
    return legend_below(apply_layout(fig, title, "layer", NORMALIZED_AXIS, width=900, height=580).update_xaxes(
        **layer_ticks(result.n_layers)))


def plot_attack_comparison(comparison) -> go.Figure:
    comps = [c for c in ("resid", "attn", "mlp", "window") if c in comparison.difference]
    fig = make_subplots(rows=2, cols=len(comps), shared_xaxes="columns", vertical_spacing=0.12,
                        subplot_titles=[f"{c}: restoration" for c in comps] + [f"{c}: difference" for c in comps])
    attacks = list(comparison.curves)
    for j, comp in enumerate(comps, start=1):
        for i, attack in enumerate(attacks):
            s = comparison.curves[attack][comp]
            add_band(fig, range(len(s["normalized"])), s["normalized"], s["low"], s["high"], attack, PALETTE[i],
                     row=1, col=j, legendgroup=attack, showlegend=j == 1)
        d = comparison.difference[comp]
        add_band(fig, range(len(d["mean"])), d["mean"], d["low"], d["high"], f"{attacks[0]} − {attacks[1]}",
                 PALETTE[2], row=2, col=j, legendgroup="diff", showlegend=j == 1)
        fig.add_hline(y=0, line=dict(color="#999", width=1), row=2, col=j)
    title = (f"Where each attack removed refusal: aligned → attacked patching<br><sup>aligned = "
             f"{short_name(comparison.model)}; " + ", ".join(f"{a} = {short_name(r)}" for a, r in
                                                          comparison.attacks.items()) + "</sup>")
    apply_layout(fig, title, "", "", width=360 * len(comps) + 120, height=760)
    legend_below(fig)
    fig.update_layout(margin=dict(t=120), legend=dict(y=-0.12))
    fig.update_xaxes(**layer_ticks(comparison.n_layers))
    fig.update_xaxes(title_text="layer (window: first layer)", row=2)
    fig.update_yaxes(title_text="normalized effect", row=1, col=1)
    fig.update_yaxes(title_text="EHA − ISA" if len(comparison.curves) == 2 else "difference", row=2, col=1)
    return fig


def figures(result) -> dict[str, go.Figure]:
    if isinstance(result, AttackComparison):
        return {"attack_comparison": plot_attack_comparison(result)}
    out = {}
    for name, exp in result.experiments.items():
        comps = exp["components"]
        if any(c in comps for c in ("resid", "attn", "mlp")):
            out[f"{name}_layers"] = plot_layer_curves(result, name)
        if "resid_pos" in comps:
            out[f"{name}_layer_position"] = plot_layer_position(result, name)
        if "heads" in comps:
            out[f"{name}_heads"] = plot_heads(result, name)
        if "window" in comps:
            out[f"{name}_windows"] = plot_windows(result, name)
    if sum(n in result.experiments for n in ("aligned_into_attacked", "attacked_into_aligned", "aligned_into_isa")) > 1:
        out["cross_overview"] = plot_cross_overview(result)
    return out
