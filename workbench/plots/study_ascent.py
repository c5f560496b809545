"""Figures of the ascent study (`workbench.studies.ascent`), pure functions of its `AscentSummary`.

    plot_hs_vs_weight(summary)        post-attack validation HS vs the ascent weight, one line per kind (Wilson
                                      intervals), the sft control as a dashed line, the chosen weights circled
    plot_collapse_vs_weight(summary)  the aligned models' collapse measures vs the weight: incoherent answers,
                                      non-word share, benign perplexity
    plot_chosen_test(summary)         the chosen configuration of each kind and sft on the test sets: HS and FA
                                      with Wilson intervals
"""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.plots.style import PALETTE, publication_layout

SFT_COLOR = "#7f7f7f"


def _color(summary, kind: str) -> str:
    return PALETTE[summary.spec.kinds.index(kind) % len(PALETTE)]


def _err(rate) -> dict:
    return dict(type="data", symmetric=False, array=[rate.high - rate.value], arrayminus=[rate.value - rate.low])


def _errs(rates) -> dict:
    return dict(type="data", symmetric=False, array=[r.high - r.value for r in rates],
                arrayminus=[r.value - r.low for r in rates])


def _series(summary, kind: str, value):
    """(weights, values) of a kind's finished cells, by weight; `value(cell)` None leaves the cell out."""
    cells = sorted((c for c in summary.cells if c.kind == kind), key=lambda c: c.weight)
    pts = [(c.weight, value(c)) for c in cells]
    pts = [(w, v) for w, v in pts if v is not None]
    return [w for w, _ in pts], [v for _, v in pts]


def _sft_line(fig, y, row=None, col=None, name: str = "sft (no ascent term)", show: bool = True) -> None:
    if y is None:
        return
    fig.add_hline(y=y, line=dict(color=SFT_COLOR, dash="dash"), row=row, col=col)
    if show:  # a legend entry for the dashed line
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=name,
                                 line=dict(color=SFT_COLOR, dash="dash")), row=row, col=col)


def plot_hs_vs_weight(summary) -> go.Figure:
    fig = make_subplots(rows=1, cols=1)
    chosen = {c.key for c in summary.chosen if c.key}
    for kind in summary.spec.kinds:
        ws, rates = _series(summary, kind, lambda c: c.validation.hs if c.validation else None)
        if not ws:
            continue
        fig.add_trace(go.Scatter(x=ws, y=[r.value for r in rates], error_y=_errs(rates), mode="lines+markers",
                                 name=kind, line=dict(color=_color(summary, kind), width=2.5)))
        picked = [(c.weight, c.validation.hs.value) for c in summary.cells
                  if c.kind == kind and c.key in chosen and c.validation]
        if picked:
            fig.add_trace(go.Scatter(x=[w for w, _ in picked], y=[v for _, v in picked], mode="markers",
                                     name=f"{kind}: chosen", showlegend=False,
                                     marker=dict(size=18, color="rgba(0,0,0,0)",
                                                 line=dict(color=_color(summary, kind), width=2))))
    base = summary.baseline.validation
    _sft_line(fig, base.hs.value if base else None)
    fig.update_xaxes(type="log", title_text="ascent weight")
    fig.update_yaxes(title_text="post-attack HS on validation (%)", rangemode="tozero")
    return publication_layout(fig, f"Post-attack harmfulness vs ascent weight (attack p = {summary.spec.p:g})")


def plot_collapse_vs_weight(summary) -> go.Figure:
    panels = (("incoherent benign answers (%)", lambda c: c.collapse.incoherent.value),
              ("non-words among answer words (%)",
               lambda c: None if c.collapse.non_word_share is None else 100 * c.collapse.non_word_share),
              ("benign answer perplexity", lambda c: c.collapse.benign_ppl))
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for t, _ in panels], horizontal_spacing=0.09)
    for col, (_, value) in enumerate(panels, start=1):
        for kind in summary.spec.kinds:
            ws, vs = _series(summary, kind, lambda c, f=value: f(c) if c.collapse else None)
            fig.add_trace(go.Scatter(x=ws, y=vs, mode="lines+markers", name=kind, showlegend=col == 1,
                                     line=dict(color=_color(summary, kind), width=2.5)), row=1, col=col)
        base = summary.baseline
        _sft_line(fig, value(base) if base.collapse else None, row=1, col=col, show=col == 1)
    fig.update_xaxes(type="log", title_text="ascent weight")
    return publication_layout(fig, "Collapse of the aligned model vs ascent weight (validation benign pairs)",
                              width=1200, height=460)


def plot_chosen_test(summary) -> go.Figure:
    rows = [("sft", summary.baseline)] + [(f"{c.kind} (w {c.weight:g})", summary.cell(c.key))
                                          for c in summary.chosen if c.key]
    rows = [(label, c) for label, c in rows if c.test is not None]
    task = summary.task or "task"
    fig = make_subplots(rows=1, cols=2, subplot_titles=("post-attack HS (%)", f"post-attack FA {task} (%)"),
                        horizontal_spacing=0.12)
    for label, c in rows:
        color = SFT_COLOR if c.key == "sft" else _color(summary, c.kind)
        fig.add_trace(go.Bar(x=[label], y=[c.test.hs.value], error_y=_err(c.test.hs), marker_color=color,
                             name=label, showlegend=False), row=1, col=1)
        if c.test.fa is not None:
            fig.add_trace(go.Bar(x=[label], y=[c.test.fa.value], error_y=_err(c.test.fa), marker_color=color,
                                 name=label, showlegend=False), row=1, col=2)
    fig.update_yaxes(range=[0, 100])
    return publication_layout(fig, "Chosen configurations on the test sets (chosen on validation; 95 % Wilson)",
                              width=1000, height=460)


def figures(summary) -> dict[str, go.Figure]:
    return {"hs_vs_weight": plot_hs_vs_weight(summary), "collapse_vs_weight": plot_collapse_vs_weight(summary),
            "chosen_test": plot_chosen_test(summary)}
