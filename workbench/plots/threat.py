"""Threat-model figures (the survey's Figure 2): a metric versus harmful ratio p, one line per base model,
with 95 % interval bands. Pure: rows in (as read from sweep run folders), figure out."""
from __future__ import annotations

import plotly.graph_objects as go

from workbench.evaluation.stats import wilson
from workbench.plots.style import PALETTE, apply_layout

METRIC_TITLES = {"hs": "Harmful score HS (%)", "hs_plus": "HS+ harmful or incoherent (%)",
                 "refusal_harmful": "Refusal rate on harmful prompts (%)", "fa_sst2": "Fine-tune accuracy, SST-2 (%)",
                 "refusal_benign": "Refusal rate on benign prompts (%)"}


def plot_metric_vs_p(rows: list[dict], metric: str, title: str | None = None) -> go.Figure:
    """Mean over seeds per (model, p); the band is the Wilson interval of the pooled counts."""
    fig = go.Figure()
    labels = sorted({r["model_label"] for r in rows})
    for i, label in enumerate(labels):
        by_p: dict[float, list[dict]] = {}
        for r in rows:
            if r["model_label"] == label and metric in r:
                by_p.setdefault(r["p"], []).append(r[metric])
        if not by_p:
            continue
        ps = sorted(by_p)
        k = [sum(x["k"] for x in by_p[p]) for p in ps]
        n = [sum(x["n"] for x in by_p[p]) for p in ps]
        val = [100 * a / b for a, b in zip(k, n)]
        ci = [wilson(a, b) for a, b in zip(k, n)]
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=ps + ps[::-1], y=[100 * c[1] for c in ci] + [100 * c[0] for c in ci][::-1],
                                 fill="toself", fillcolor=color, opacity=0.15, line=dict(width=0),
                                 hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=ps, y=val, mode="lines+markers", name=label, line=dict(color=color, width=2.5),
                                 customdata=list(zip(k, n)),
                                 hovertemplate="p=%{x}<br>%{y:.1f}% (%{customdata[0]}/%{customdata[1]})"))
    apply_layout(fig, title or f"{METRIC_TITLES.get(metric, metric)} vs harmful ratio p",
                 "harmful ratio p in the fine-tuning data", METRIC_TITLES.get(metric, metric))
    fig.update_yaxes(range=[-2, 102])
    return fig


def figures(rows: list[dict]) -> dict[str, go.Figure]:
    present = {k for r in rows for k in r}
    return {f"{m}_vs_p": plot_metric_vs_p(rows, m) for m in METRIC_TITLES if m in present}
