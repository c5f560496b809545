"""Landscape: VISAGE safety-landscape slices (1D, 2D, aligned → attacked line) and their scores.

Reads `landscape` analysis runs (`workbench analyze landscape`); figures come from
`workbench.plots.landscape`, scores from each run's metrics.json.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from apps.tabs import common
from workbench import figures as wf
from workbench.vocabulary import analysis_key

TITLE = "Landscape"
SCORES = (("visage_1d", "VISAGE 1D"), ("visage_2d", "VISAGE 2D"), ("basin_2d_fraction", "basin, share of 2D grid"),
          ("safety_at_origin", "safety at the model"), ("line_safety_at_0", "line: safety at aligned"),
          ("line_safety_at_1", "line: safety at attacked"), ("metric", "safety metric"), ("n_prompts", "prompts"))


def render(root: Path) -> None:
    recs = [r for r in common.runs(root, "analysis") if analysis_key(r["analysis"] or "") == "landscape"]
    if recs:
        st.markdown("**VISAGE scores of every landscape run** (mean safety inside the basin; higher = a wider, "
                    "safer basin around the model)")
        table = []
        for r in reversed(recs):
            spec = common.read_spec(r["path"])
            row = {"run": r["folder"], "model": wf.short_ref(spec.model), "compare": wf.short_ref(spec.compare)}
            row.update({title: r["metrics"].get(key) for key, title in SCORES})
            table.append(row)
        st.dataframe(table, hide_index=True, width="stretch")
    common.analysis_section(
        root, "landscape", "Safety landscape",
        f"workbench analyze landscape --model <aligned run folder> --compare <attacked run folder> "
        f"--out {root}/analysis-landscape", key="landscape")
