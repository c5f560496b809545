"""Figures of the safety-params study (`workbench.studies.safety_params.SafetyParamsResult`).

    plot_curves(result)     safety-specificity curves: refusal lost vs utility lost, one line per criterion, one
                            point per k (labelled), paired 95 % intervals on refusal lost
    plot_jaccard(result)    heatmap criterion × criterion of the Jaccard overlap of top-k sets (a menu picks k;
                            the middle k shows first)
    plot_layers(result)     each criterion's share per layer of its top k % of all weights ranked together
                            (middle k)
    plot_subspace(result)   per layer: share of the pruning change inside SafeLoRA's alignment subspace, over the
                            same share in a random subspace of equal rank (middle k; only with a base model)
    plot_act(result)        post-attack HS vs FA of each defense a criterion drove (only with the act step)
"""
from __future__ import annotations

import math

import plotly.graph_objects as go

from workbench.plots.style import PALETTE, publication_layout

CONTROL_DASH = {"random": "dot", "delta": "dash"}


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _mid(result) -> int:
    return len(result.k) // 2


def plot_curves(result) -> go.Figure:
    fig = go.Figure()
    for c, name in enumerate(result.criteria):
        x = result.utility_lost[c].tolist()
        y = result.refusal_lost[c].tolist()
        lo, hi = result.refusal_lost_low[c].tolist(), result.refusal_lost_high[c].tolist()
        fig.add_trace(go.Scatter(
            x=[0.0, *x], y=[0.0, *y], mode="lines+markers+text", name=name,
            line=dict(color=_color(c), dash=CONTROL_DASH.get(name, "solid")),
            text=["", *[f"{k:g}%" for k in result.k]], textposition="top left", textfont=dict(size=10),
            error_y=dict(type="data", symmetric=False, array=[0.0, *[h - v for h, v in zip(hi, y, strict=True)]],
                         arrayminus=[0.0, *[v - low for v, low in zip(y, lo, strict=True)]], thickness=1),
            hovertemplate=name + ": utility lost %{x:.3f} nats, refusal lost %{y:.1f} pp<extra></extra>"))
    fig.update_xaxes(title_text="utility lost (Δ answer NLL on held-out Alpaca, nats/token)")
    fig.update_yaxes(title_text="refusal lost (percentage points)")
    u = result.unpruned
    title = (f"Safety-specificity: top k% pruned per criterion (unpruned refusal {u.refusal:.0f}%, "
             f"n = {result.n_eval_prompts})")
    return publication_layout(fig, title, width=900, height=560)


def plot_jaccard(result) -> go.Figure:
    fig = go.Figure()
    mid = _mid(result)
    for i, k in enumerate(result.k):
        z = result.jaccard[i].tolist()
        fig.add_trace(go.Heatmap(z=z, x=result.criteria, y=result.criteria, zmin=0, zmax=1, colorscale="Viridis",
                                 visible=i == mid, colorbar=dict(title=dict(text="Jaccard", side="right")),
                                 text=[[("—" if v is None or math.isnan(v) else f"{v:.2f}") for v in row] for row in z],
                                 texttemplate="%{text}",
                                 hovertemplate="%{y} vs %{x}: %{z:.3f}<extra>top " + f"{k:g}%</extra>"))
    buttons = [dict(label=f"top {k:g}%", method="update",
                    args=[{"visible": [j == i for j in range(len(result.k))]},
                          {"title.text": f"Overlap of top-{k:g}% sets (Jaccard)"}]) for i, k in enumerate(result.k)]
    fig.update_layout(updatemenus=[dict(buttons=buttons, active=mid, x=1.0, xanchor="right", y=1.12)])
    fig.update_yaxes(autorange="reversed")
    n = len(result.criteria)
    return publication_layout(fig, f"Overlap of top-{result.k[mid]:g}% sets (Jaccard)",
                              width=max(700, 360 + 70 * n), height=max(520, 240 + 60 * n))


def plot_layers(result) -> go.Figure:
    mid = _mid(result)
    fig = go.Figure()
    for c, name in enumerate(result.criteria):
        fig.add_trace(go.Scatter(x=result.layers, y=(100 * result.layer_share[c, mid]).tolist(), mode="lines+markers",
                                 name=name, line=dict(color=_color(c), dash=CONTROL_DASH.get(name, "solid"))))
    fig.update_xaxes(title_text="layer", dtick=1 if len(result.layers) <= 12 else None)
    fig.update_yaxes(title_text="% of the criterion's top-k set")
    return publication_layout(fig, f"Where each criterion's top {result.k[mid]:g}% of all weights lies",
                              width=900, height=520)


def plot_subspace(result) -> go.Figure:
    mid = _mid(result)
    fig = go.Figure()
    for c, name in enumerate(result.criteria):
        share, rand = result.subspace_share[c, mid], result.subspace_random[c, mid]
        ratio = [(s / r if r > 0 else float("nan")) for s, r in zip(share.tolist(), rand.tolist(), strict=True)]
        fig.add_trace(go.Scatter(x=result.layers, y=ratio, mode="lines+markers", name=name,
                                 line=dict(color=_color(c), dash=CONTROL_DASH.get(name, "solid")),
                                 customdata=list(zip((100 * share).tolist(), (100 * rand).tolist(), strict=True)),
                                 hovertemplate=name + ", layer %{x}: %{customdata[0]:.2f}% in span(V) vs "
                                               "%{customdata[1]:.2f}% in a random subspace<extra></extra>"))
    fig.add_hline(y=1.0, line=dict(color="#888", dash="dot"))
    fig.update_xaxes(title_text="layer", dtick=1 if len(result.layers) <= 12 else None)
    fig.update_yaxes(title_text="share in SafeLoRA subspace / share in random subspace", type="log")
    return publication_layout(fig, f"Pruning change of the top {result.k[mid]:g}% inside the alignment subspace",
                              width=900, height=520)


def plot_act(result) -> go.Figure:
    fig = go.Figure()
    symbols = {"none": "x", "fine-tuning": "square", "post-fine-tuning": "diamond"}
    for stage, symbol in symbols.items():
        rows = [r for r in result.act if r.stage == stage]
        if not rows:
            continue
        fig.add_trace(go.Scatter(
            x=[r.fa for r in rows], y=[r.hs if r.hs is not None else r.refusal_harmful for r in rows],
            mode="markers+text", name={"none": "attack, undefended", "fine-tuning": "Freeze (its top layers)",
                                       "post-fine-tuning": "prune after the attack"}[stage],
            marker=dict(symbol=symbol, size=11), text=[r.criterion for r in rows], textposition="top center",
            hovertemplate="%{text}: FA %{x:.0f}%, %{y:.0f}%<extra>" + stage + "</extra>"))
    judged = any(r.hs is not None for r in result.act)
    fig.update_xaxes(title_text="FA after the attack (%)")
    fig.update_yaxes(title_text="HS after the attack (%)" if judged else "refusal on harmful prompts (%)")
    return publication_layout(fig, "When should it act? Each criterion as a defense, after the attack",
                              width=900, height=560)


def figures(result) -> dict[str, go.Figure]:
    out = {"safety_specificity": plot_curves(result), "jaccard": plot_jaccard(result),
           "layer_share": plot_layers(result)}
    if result.subspace_share is not None:
        out["safelora_subspace"] = plot_subspace(result)
    if result.act:
        out["act"] = plot_act(result)
    return out
