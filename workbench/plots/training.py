"""Training curves of a run and its defense's own loss terms (training.json `diagnostics`), per optimizer step.

Why a figure: whether a defense did anything is first visible in its own terms — Vaccine's perturbed loss above
the clean one, Booster's regulariser h(w) − h(w'), RepNoise's noise MMD, TAR's entropy after the simulated
attack — long before an evaluation says whether it helped.
"""
from __future__ import annotations

import math
from numbers import Real

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.plots.style import PALETTE, apply_layout


def training_series(training: dict) -> dict[str, tuple[list[int], list[float]]]:
    """{term: (steps, values)} from a training.json: "task loss", then "<plugin>: <term>" for every numeric
    diagnostic (a list of numbers, e.g. TAR's per-inner-step losses, becomes its mean; nested dicts are skipped)."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    losses = training.get("losses") or []
    if losses:
        series["task loss"] = (list(range(1, len(losses) + 1)), [float(x) for x in losses])
    for entry in training.get("diagnostics") or []:
        step = entry.get("step")
        for plugin, terms in entry.items():
            if plugin == "step" or not isinstance(terms, dict):
                continue
            for term, value in terms.items():
                if isinstance(value, list) and value and all(isinstance(v, Real) for v in value):
                    term, value = f"{term} (mean)", sum(value) / len(value)
                if isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value):
                    xs, ys = series.setdefault(f"{plugin}: {term}", ([], []))
                    xs.append(step)
                    ys.append(float(value))
    return series


def plot_training(runs: dict[str, dict], max_panels: int = 8, terms: list[str] | None = None) -> go.Figure:
    """One panel per term, one line per run: `runs` maps a label to that run's training.json; `terms` picks the
    panels (names as `training_series` gives them), default the first `max_panels` found."""
    per_run = {label: training_series(t) for label, t in runs.items()}
    found = list(dict.fromkeys(term for s in per_run.values() for term in s))
    terms = [t for t in terms if t in found] if terms is not None else found[:max_panels]
    if not terms:
        raise ValueError("no training curves: the training.json files hold neither losses nor diagnostics")
    cols = 2 if len(terms) > 1 else 1
    rows = math.ceil(len(terms) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=terms, horizontal_spacing=0.1,
                        vertical_spacing=0.5 / rows)
    for i, (label, series) in enumerate(per_run.items()):
        for j, term in enumerate(terms):
            if term not in series:
                continue
            xs, ys = series[term]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=label, legendgroup=label, showlegend=j == 0
                                     or all(t not in series for t in terms[:j]),
                                     line=dict(color=PALETTE[i % len(PALETTE)], width=1.5)),
                          row=j // cols + 1, col=j % cols + 1)
    apply_layout(fig, "training: task loss and the defense's own terms", "", "", width=900, height=260 * rows + 120)
    fig.update_xaxes(title_text="optimizer step", row=rows)
    return fig
