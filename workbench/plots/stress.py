"""Best-so-far objective against trial, one line per defense: how fast each defense's worst case was found, and
whether the budget was enough (a curve still climbing at K says the worst case is a lower bound)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from workbench.plots.style import PALETTE, apply_layout


def best_so_far(values: Sequence[float | None]) -> list[float | None]:
    """The running maximum of per-trial objectives in trial order; None (a failed or infeasible trial) counts
    for nothing, and the curve is None until the first counted trial."""
    out: list[float | None] = []
    best = None
    for v in values:
        if v is not None and (best is None or v > best):
            best = v
        out.append(best)
    return out


def plot_stress_best_so_far(curves: Mapping[str, Sequence[float | None]], objective: str = "objective",
                            title: str = "stress test: best-so-far objective") -> go.Figure:
    """`curves` maps a label (a defense, with its threat model) to its trials' objectives in trial order, None for
    a trial that failed or broke the FA floor."""
    if not curves:
        raise ValueError("no stress studies to plot")
    fig = go.Figure()
    for i, (label, values) in enumerate(curves.items()):
        ys = best_so_far(values)
        color = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=list(range(1, len(ys) + 1)), y=ys, mode="lines+markers", name=label,
                                 line=dict(color=color, width=2, shape="hv"), marker=dict(size=6)))
    apply_layout(fig, title, "trial", f"best feasible {objective} so far (validation)")
    fig.update_yaxes(rangemode="tozero")
    fig.update_xaxes(dtick=1 if max(len(v) for v in curves.values()) <= 20 else None)
    return fig
