"""Threat-model figures (the survey's Figure 2): a metric versus harmful ratio p, one line per base model,
with 95 % interval bands. Pure: rows in (as read from sweep run folders), figure out."""
from __future__ import annotations

import plotly.graph_objects as go

from workbench.evaluation.stats import wilson
from workbench.plots.style import PALETTE, apply_layout
from workbench.vocabulary import axis_title

METRICS = ("hs", "hs_plus", "refusal_harmful", "fa_sst2", "refusal_benign")  # drawn against p, in this order


def _series(rows: list[dict], metric: str):
    """(label, ps, value %, (low %, high %) per p, (k, n) per p, colour) per base model: counts pooled over seeds."""
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
        ci = [wilson(a, b) for a, b in zip(k, n, strict=False)]
        yield (label, ps, [100 * a / b for a, b in zip(k, n, strict=False)],
               ([100 * c[0] for c in ci], [100 * c[1] for c in ci]),
               list(zip(k, n, strict=False)), PALETTE[i % len(PALETTE)])


def _add_series(fig: go.Figure, rows: list[dict], metric: str, legend: bool = True, **where) -> None:
    for label, ps, val, (low, high), kn, color in _series(rows, metric):
        fig.add_trace(go.Scatter(x=ps + ps[::-1], y=high + low[::-1], mode="lines", fill="toself", fillcolor=color,
                                 opacity=0.15, line=dict(width=0), hoverinfo="skip", showlegend=False), **where)
        fig.add_trace(go.Scatter(x=ps, y=val, mode="lines+markers", name=label, line=dict(color=color, width=2.5),
                                 legendgroup=label, showlegend=legend, customdata=kn,
                                 hovertemplate="p=%{x}<br>%{y:.1f}% (%{customdata[0]}/%{customdata[1]})"), **where)


def plot_metric_vs_p(rows: list[dict], metric: str, title: str | None = None) -> go.Figure:
    """Mean over seeds per (model, p); the band is the Wilson interval of the pooled counts."""
    fig = go.Figure()
    _add_series(fig, rows, metric)
    apply_layout(fig, title or f"{axis_title(metric)} vs harmful ratio p",
                 "harmful ratio p in the fine-tuning data", axis_title(metric))
    fig.update_yaxes(range=[-2, 102])
    return fig


def plot_figure2(rows: list[dict]) -> go.Figure:
    """The survey's Figure 2 in one picture: HS (left) and FA (right) vs p, one line per base model."""
    from plotly.subplots import make_subplots  # deferred: plotly

    fig = make_subplots(rows=1, cols=2, subplot_titles=(axis_title("hs"), axis_title("fa_sst2")),
                        horizontal_spacing=0.1)
    _add_series(fig, rows, "hs", row=1, col=1)
    _add_series(fig, rows, "fa_sst2", legend=False, row=1, col=2)
    apply_layout(fig, "Harmful fine-tuning: HS and FA vs harmful ratio p (95 % Wilson bands)",
                 "harmful ratio p", "%", width=1100, height=460)
    fig.update_xaxes(title_text="harmful ratio p")
    fig.update_yaxes(range=[-2, 102])
    return fig


def figures(rows: list[dict]) -> dict[str, go.Figure]:
    present = {k for r in rows for k in r}
    out = {f"{m}_vs_p": plot_metric_vs_p(rows, m) for m in METRICS if m in present}
    if {"hs", "fa_sst2"} <= present:
        out["figure2"] = plot_figure2(rows)
    return out
