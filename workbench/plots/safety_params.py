"""Figures of the safety-params study (`workbench.studies.safety_params.SafetyParamsResult`).

    plot_curves(result)     safety-specificity curves: refusal lost vs utility lost, one line per criterion, one
                            point per k (labelled), paired 95 % intervals on refusal lost
    plot_jaccard(result)    heatmap criterion × criterion of the Jaccard overlap of top-k sets (a menu picks k;
                            the middle k shows first)
    plot_jaccard_cells(result)  heatmap layer × module of the Jaccard of one pair of criteria (a menu picks it)
    plot_layers(result)     each criterion's share per layer of its top k % of all weights ranked together
                            (middle k)
    plot_subspace(result)   per layer: share of the pruning change inside SafeLoRA's alignment subspace, over the
                            same share in a random subspace of equal rank (middle k; only with a base model)
    plot_act(result)        post-attack HS and FA of each defense a criterion drove, against the undefended attack
                            (only with the act step)
"""
from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.plots.style import PALETTE, publication_layout

CONTROL_DASH = {"random": "dot", "delta": "dash"}
CONTROL_COLOR = {"random": "#7f7f7f", "delta": "#000000"}
CRITERION_COLORS = [c for c in PALETTE if c not in ("#F0E442", "#000000")]  # yellow is unreadable on white


def _color(result, i: int) -> str:
    name = result.criteria[i]
    if name in CONTROL_COLOR:
        return CONTROL_COLOR[name]
    rank = sum(1 for n in result.criteria[:i] if n not in CONTROL_COLOR)
    return CRITERION_COLORS[rank % len(CRITERION_COLORS)]


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
            line=dict(color=_color(result, c), dash=CONTROL_DASH.get(name, "solid")),
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


def plot_jaccard_cells(result) -> go.Figure:
    """Jaccard per (layer, module type) at the middle k, one pair of criteria at a time (a menu picks the pair)."""
    mid = _mid(result)
    pairs = [(a, b) for a in range(len(result.criteria)) for b in range(a + 1, len(result.criteria))]
    fig = go.Figure()
    for j, (a, b) in enumerate(pairs):
        z = result.jaccard_cells[mid, a, b].tolist()
        fig.add_trace(go.Heatmap(z=z, x=result.module_types, y=[str(x) for x in result.layers], zmin=0, zmax=1,
                                 colorscale="Viridis", visible=j == 0,
                                 colorbar=dict(title=dict(text="Jaccard", side="right")),
                                 hovertemplate="layer %{y}, %{x}: %{z:.3f}<extra></extra>"))

    def title(a, b):
        return f"Jaccard of top-{result.k[mid]:g}% sets per matrix: {result.criteria[a]} vs {result.criteria[b]}"

    buttons = [dict(label=f"{result.criteria[a]} vs {result.criteria[b]}", method="update",
                    args=[{"visible": [i == j for i in range(len(pairs))]}, {"title.text": title(a, b)}])
               for j, (a, b) in enumerate(pairs)]
    if len(pairs) > 1:
        fig.update_layout(updatemenus=[dict(buttons=buttons, active=0, x=1.0, xanchor="right", y=1.12)])
    fig.update_xaxes(title_text="module")
    fig.update_yaxes(title_text="layer", autorange="reversed", type="category")
    first = title(*pairs[0]) if pairs else "Jaccard per matrix (one criterion only)"
    return publication_layout(fig, first, width=760, height=max(480, 140 + 18 * len(result.layers)))


def plot_layers(result) -> go.Figure:
    mid = _mid(result)
    fig = go.Figure()
    for c, name in enumerate(result.criteria):
        fig.add_trace(go.Scatter(x=result.layers, y=(100 * result.layer_share[c, mid]).tolist(), mode="lines+markers",
                                 name=name, line=dict(color=_color(result, c), dash=CONTROL_DASH.get(name, "solid"))))
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
                                 line=dict(color=_color(result, c), dash=CONTROL_DASH.get(name, "solid")),
                                 customdata=list(zip((100 * share).tolist(), (100 * rand).tolist(), strict=True)),
                                 hovertemplate=name + ", layer %{x}: %{customdata[0]:.2f}% in span(V) vs "
                                               "%{customdata[1]:.2f}% in a random subspace<extra></extra>"))
    fig.add_hline(y=1.0, line=dict(color="#888", dash="dot"))
    fig.update_xaxes(title_text="layer", dtick=1 if len(result.layers) <= 12 else None)
    fig.update_yaxes(title_text="in span(V) / in random subspace (share of ‖M⊙W‖²)", type="log")
    return publication_layout(fig, f"Pruning change of the top {result.k[mid]:g}% inside the alignment subspace",
                              width=900, height=520)


def plot_act(result) -> go.Figure:
    judged = any(r.hs is not None for r in result.act)
    metrics = (("hs", "HS after the attack (%)") if judged else ("refusal_harmful", "refusal on harmful prompts (%)"),
               ("fa", "FA after the attack (%)"))
    fig = make_subplots(rows=1, cols=2, subplot_titles=[t for _, t in metrics], horizontal_spacing=0.1)
    none = next((r for r in result.act if r.stage == "none"), None)
    criteria = [c for c in result.criteria if any(r.criterion == c for r in result.act)]
    stages = (("fine-tuning", "Freeze on its top layers", "#0072B2"), ("post-fine-tuning", "prune after the attack",
                                                                        "#D55E00"))
    for col, (key, _) in enumerate(metrics, start=1):
        for stage, label, color in stages:
            rows = {r.criterion: r for r in result.act if r.stage == stage}
            values = [getattr(rows[c], key) if c in rows else None for c in criteria]
            fig.add_trace(go.Bar(x=criteria, y=values, name=label, marker_color=color, showlegend=col == 1,
                                 text=[("—" if v is None else f"{v:.0f}") for v in values], textposition="outside"),
                          row=1, col=col)
        if none is not None and getattr(none, key) is not None:
            fig.add_hline(y=getattr(none, key), line=dict(color="#444", dash="dash"), row=1, col=col,
                          annotation_text="undefended", annotation_position="top right")
        fig.update_yaxes(range=[0, 110], row=1, col=col)
    fig.update_layout(barmode="group")
    return publication_layout(fig, "When should it act? Each criterion as a defense, judged after the attack",
                              width=1100, height=540)


def figures(result) -> dict[str, go.Figure]:
    out = {"safety_specificity": plot_curves(result), "jaccard": plot_jaccard(result),
           "layer_share": plot_layers(result)}
    if len(result.criteria) > 1:
        out["jaccard_cells"] = plot_jaccard_cells(result)
    if result.subspace_share is not None:
        out["safelora_subspace"] = plot_subspace(result)
    if result.act:
        out["act"] = plot_act(result)
    return out
