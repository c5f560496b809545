"""Parameters: where the safety-critical weights are (Wanda / SNIP scores) and what pruning them does.

Reads `wanda` analysis runs (`workbench analyze wanda`): density maps layer × module of the set-difference
mask (top-q on safety data minus top-p on utility data), the overlap of safety- and utility-critical
weights, and the pruning evaluation (set difference vs random, same count).
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from apps.tabs import common
from workbench import figures as wf
from workbench.vocabulary import analysis_key

TITLE = "Parameters"
COLUMNS = (("score", "score"), ("q", "q"), ("p", "p"), ("n_masked", "weights in mask"),
           ("masked_fraction", "share of weights"), ("unpruned.refusal", "refusal, unpruned"),
           ("set_difference.refusal", "refusal, mask pruned"), ("random.refusal", "refusal, random pruned"),
           ("set_difference.utility_nll", "utility NLL, mask pruned"), ("random.utility_nll", "utility NLL, random"))


def render(root: Path) -> None:
    recs = [r for r in common.runs(root, "analysis") if analysis_key(r["analysis"] or "") == "wanda"]
    if recs:
        st.markdown("**Harmful-parameter location runs**")
        table = []
        for r in reversed(recs):
            spec = common.read_spec(r["path"])
            row = {"run": r["folder"], "model": wf.short_ref(spec.model), "safety data": spec.params.get("safety_data")}
            row.update({title: r["metrics"].get(key) for key, title in COLUMNS})
            table.append(row)
        st.dataframe(table, hide_index=True, width="stretch")
    common.analysis_section(root, "wanda", "Harmful-parameter location",
                            f"workbench analyze wanda --model <aligned run folder> --out {root}/analysis-wanda",
                            key="wanda")
