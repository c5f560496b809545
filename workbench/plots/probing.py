"""Figures of linear probing (`workbench.analysis.probing`). Pure: result in, plotly Figure out.

    plot_probe_accuracy(result)   accuracy per layer: cross-validated mean ± std (band) and held-out (dashed),
                                  one colour per model, chance at 0.5
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from workbench.plots.patching import add_band, layer_ticks, legend_below, model_color, short_name
from workbench.plots.style import apply_layout


def plot_probe_accuracy(result) -> go.Figure:
    fig = go.Figure()
    layers = list(range(result.n_layers))
    for i, (label, ref) in enumerate(zip(result.labels, result.refs, strict=False)):
        color = model_color(label, i)
        mean, std = result.cv_mean[i].numpy(), result.cv_std[i].numpy()
        name = short_name(ref)
        add_band(fig, layers, mean, np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1),
                 f"{name}: {result.folds}-fold CV (± std)", color, legendgroup=label)
        fig.add_trace(go.Scatter(x=layers, y=result.heldout[i].tolist(), mode="lines+markers", legendgroup=label,
                                 name=f"{name}: held-out ({2 * result.n_eval} prompts)",
                                 line=dict(color=color, width=2, dash="dash"), marker=dict(symbol="diamond")))
    fig.add_hline(y=0.5, line=dict(color="#999", width=1, dash="dot"), annotation_text="chance")
    fig.update_yaxes(range=[0.4, 1.02])
    title = (f"Linear probes for harmful vs harmless requests (hook_{result.hook}, last prompt token)<br>"
             f"<sup>logistic regression per layer; train {2 * result.n_train} prompts (AdvBench / Alpaca train "
             f"split), held-out {2 * result.n_eval} eval-split prompts</sup>")
    return legend_below(apply_layout(fig, title, "layer", "accuracy", width=900, height=620).update_xaxes(
        **layer_ticks(result.n_layers)))


def figures(result) -> dict[str, go.Figure]:
    return {"probe_accuracy": plot_probe_accuracy(result)}
