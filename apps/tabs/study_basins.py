"""Study view: do alignment-stage defenses widen the safety basin, or only lower the harmful loss? (question 2)

Reads study runs of kind "study", name "basins" (`workbench study basins`, `workbench.studies.basins`) under the runs
root, through the STUDIES registry (`workbench.figures.load_study`); figures come from `workbench.plots.basins`. Never
measures anything itself.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from apps.tabs import common
from workbench.plots.basins import plot_correlations, plot_predictor, plot_random_slices

TITLE = "Safety basins (Q2)"
NAME = "basins"


def _num(v, fmt: str = "+.2f") -> str:
    return "—" if v is None else f"{v:{fmt}}"


def render(root: Path) -> None:
    st.subheader("Do alignment-stage defenses widen the safety basin, or only lower the harmful loss?")
    recs = common.study_runs(root, NAME)
    if not recs:
        common.empty("basin study runs", f"workbench study basins --runs <runs root> --directions 8 --seed 0 "
                                         f"--out {root}/study-basins")
        return
    rec = common.pick_run(recs, "Basin study", key="basins-study")
    path = rec["path"]
    result, err = common.read_study(path)
    if err:
        st.warning(f"could not read this study run ({err})")
        return
    spec = result.spec
    st.caption(f"{len(result.models)} aligned models · {spec.attack} at p = "
               f"{'any' if spec.p is None else f'{spec.p:g}'} · {len(result.direction_seeds)} shared random "
               f"directions (seeds {result.direction_seeds}) · HS by "
               f"{result.judge or 'each run’s own judge'} · study folder `{path}`")
    st.markdown("**Spearman ρ of each predictor with post-attack HS across the aligned models** (a measure of "
                "robustness correlates negatively: wider or safer basin → lower HS)")
    st.dataframe([{"predictor": p.title, "ρ": _num(p.correlation.rho),
                   f"{spec.level:.0%} interval": "—" if p.correlation.low is None
                   else f"[{p.correlation.low:+.2f}, {p.correlation.high:+.2f}]",
                   "n models": p.correlation.n, "note": p.correlation.note} for p in result.predictors],
                 hide_index=True, width="stretch")
    if any(p.correlation.rho is not None for p in result.predictors):
        st.plotly_chart(plot_correlations(result), theme=None, key="basins-correlations", width="content")
    measured = [p for p in result.predictors if any(v is not None for v in p.values)]
    if measured:
        names = [p.name for p in measured]
        name = st.selectbox("Predictor against post-attack HS", names, key="basins-predictor",
                            format_func=lambda n: result.predictor(n).title)
        st.plotly_chart(plot_predictor(result, name), theme=None, key=f"basins-scatter-{name}", width="content")
    if result.models:
        st.plotly_chart(plot_random_slices(result), theme=None, key="basins-slices", width="content")
    with st.expander("every aligned model", expanded=False):
        st.dataframe([{"model": m.label, "post-attack HS %": m.hs, **{p.name: p.values[i] for p in result.predictors},
                       "line": m.line_missing or "measured", "run": m.run}
                      for i, m in enumerate(result.models)], hide_index=True, width="stretch")
        if result.skipped:
            st.json(result.skipped, expanded=False)
