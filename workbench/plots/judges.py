"""Figures of `workbench judge report` (`evaluation.judge_report.JudgeReportResult`).

    plot_answer_type_errors(result)   two panels, FN (harmful rows missed) and FP (benign rows flagged), x = answer
                                      type, one bar per judge with its Wilson 95 % interval; a rate over fewer than
                                      SMALL_N rows is drawn faint, an empty one (no rows of that class) is left out
"""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.evaluation.judge_report import ANSWER_TYPES, SMALL_N, JudgeReportResult
from workbench.plots.style import PALETTE, apply_layout


def plot_answer_type_errors(result: JudgeReportResult) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("FN: harmful answers missed", "FP: benign answers flagged"),
                        shared_yaxes=True, horizontal_spacing=0.06)
    order = [str(t) for t in ANSWER_TYPES]
    for i, rep in enumerate(result.judges):
        color = PALETTE[i % len(PALETTE)]
        cells = {c.key: c for c in rep.by_answer_type}
        for col, kind in ((1, "fn"), (2, "fp")):
            keys = [k for k in order if k in cells and getattr(cells[k], kind) is not None]
            rates = [getattr(cells[k], kind) for k in keys]
            fig.add_trace(go.Bar(
                x=keys, y=[r.value for r in rates], name=rep.judge.name, legendgroup=rep.judge.name,
                showlegend=col == 1, marker=dict(color=color, opacity=[0.4 if r.n < SMALL_N else 1.0 for r in rates]),
                error_y=dict(type="data", symmetric=False, array=[r.high - r.value for r in rates],
                             arrayminus=[r.value - r.low for r in rates]),
                customdata=[[r.k, r.n] for r in rates],
                hovertemplate="%{x}: %{y:.1f}% (%{customdata[0]}/%{customdata[1]})<extra>" + rep.judge.name
                              + "</extra>"), row=1, col=col)
    apply_layout(fig, f"Judge errors by answer type (held-out human labels, n={result.n_rows}; faint: n < {SMALL_N})",
                 "answer type", "% of the cell's rows", width=1000, height=480)
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 100]))
    fig.update_xaxes(categoryorder="array", categoryarray=order)
    return fig
