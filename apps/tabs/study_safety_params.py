"""Study view: which criterion finds the safety-critical weights, and when should it act? (docs/open-questions.md,
question 1; `workbench study safety-params`).

Reads study runs of kind "study", name "safety-params": the safety-specificity table (refusal lost and utility lost
per criterion and k, with the paired interval), the choice of `pq`, the defenses each criterion drove (`--act`),
and the figures of `workbench.plots.safety_params`. Never trains.
"""
from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from apps.tabs import common
from workbench import figures as wf
from workbench.plots.safety_params import figures

TITLE = "Safety-critical weights (Q1)"
NAME = "safety-params"


def _curve_table(result) -> list[dict]:
    rows = []
    for c, name in enumerate(result.criteria):
        for i, k in enumerate(result.k):
            rows.append({"criterion": name, "k (%)": k, "weights pruned": int(result.n_pruned[c, i]),
                         "refusal (%)": round(float(result.refusal[c, i]), 1),
                         "refusal lost (pp)": round(float(result.refusal_lost[c, i]), 1),
                         "95% interval": f"[{float(result.refusal_lost_low[c, i]):.0f}, "
                                         f"{float(result.refusal_lost_high[c, i]):.0f}]",
                         "McNemar p": round(float(result.refusal_lost_p[c, i]), 3),
                         "utility lost (nats)": round(float(result.utility_lost[c, i]), 4)})
    return rows


@st.cache_data(show_spinner=False)
def _figures(path: str) -> dict[str, go.Figure]:
    """The study's figures, drawn once per run from the result `common.read_study` already loaded."""
    result, _ = common.read_study(path)
    return dict(figures(result))


def render(root: Path) -> None:
    recs = common.study_runs(root, NAME)
    if not recs:
        common.empty("safety-params study runs",
                     f"workbench study safety-params --model <aligned run folder> --out {root}/study-safety-params")
        return
    st.markdown("**Safety-specificity of each criterion**: refusal lost on held-out harmful prompts against utility "
                "lost (answer NLL on held-out Alpaca) as the top k % of weights by each criterion are pruned; "
                "random and |ΔW| of the alignment update are the controls every criterion must beat.")
    rec = common.pick_run(recs, "Study run", key="sp-run")
    result, err = common.read_study(rec["path"])
    if err:
        st.warning(f"could not read this study run ({err})")
        return
    figs = _figures(rec["path"])
    u = result.unpruned
    st.caption(f"model: `{wf.short_ref(result.model)}` · base: `{wf.short_ref(result.base)}` · ranking: "
               f"{result.group} · unpruned refusal {u.refusal:.0f}% (n = {result.n_eval_prompts}), utility NLL "
               f"{u.utility_nll:.3f} · run folder: `{rec['path']}`")
    st.dataframe(_curve_table(result), hide_index=True, width="stretch")
    if result.pq:
        chosen = next(r for r in result.pq if r.chosen)
        st.caption(f"pq chose p = {chosen.p:g} on the calibration data (gain {chosen.gain:.4f} nats at k = "
                   f"{chosen.k:g}%)")
    if result.act:
        st.markdown("**When should it act?** Each criterion as a defense, judged after the attack")
        st.dataframe([r.model_dump() for r in result.act], hide_index=True, width="stretch")
    for name, fig in figs.items():
        if isinstance(fig, go.Figure):
            st.plotly_chart(fig, theme=None, key=f"sp-{name}", width="content")
