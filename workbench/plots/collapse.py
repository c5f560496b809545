"""Figures of the collapse measures (`workbench.analysis.collapse`).

    plot_collapse(result)   CollapseResult: incoherent answers and non-word share (%), benign perplexity
"""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.plots.style import PALETTE, publication_layout


def plot_collapse(result) -> go.Figure:
    inc = result.incoherent
    fig = make_subplots(rows=1, cols=2, subplot_titles=("benign answers (%)", "benign perplexity"),
                        horizontal_spacing=0.15)
    fig.add_trace(go.Bar(x=["incoherent", "non-words"], y=[inc["value"], 100 * result.non_word_share],
                         error_y=dict(type="data", symmetric=False, array=[inc["high"] - inc["value"], 0],
                                      arrayminus=[inc["value"] - inc["low"], 0]),
                         marker_color=PALETTE[1], showlegend=False), row=1, col=1)
    fig.add_trace(go.Bar(x=["answer perplexity"], y=[result.benign_ppl], marker_color=PALETTE[0], showlegend=False),
                  row=1, col=2)
    return publication_layout(fig, f"Collapse measures on {result.n} benign validation pairs", width=820, height=420)


def figures(result) -> dict[str, go.Figure]:
    return {"collapse": plot_collapse(result)}
