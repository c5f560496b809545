"""Threat model: harmful score and fine-tune accuracy versus the harmful ratio p (the survey's Figure 2).

Reads sweep folders (`sweep-status.json` + `cells/*/` runs, written by `workbench figure2` or
`workbench sweep`) and draws them with `workbench.plots.threat`: one line per base model, mean over seeds,
Wilson 95 % bands from the pooled counts.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from apps.tabs import common
from workbench import figures as wf
from workbench.vocabulary import axis_title, fmt_rate

TITLE = "Threat model"


@st.cache_data(show_spinner="reading the sweep…")
def sweep(folder: str, fp: tuple) -> tuple[list[dict], dict]:
    return wf.sweep_rows(folder), wf.sweep_status(folder)


def render(root: Path) -> None:
    folders = wf.sweep_dirs(root)
    if not folders:
        common.empty("sweeps under this runs root",
                     f"workbench figure2 --aligned <an align run folder> --base <its base model> --out {root}/figure2")
        return
    labels = {str(f): (str(f.relative_to(root)) if f != root else ".") for f in folders}
    folder = st.selectbox("Sweep", list(reversed(list(labels))), format_func=labels.get, key="threat-sweep")
    rows, status = sweep(folder, common.fingerprint(Path(folder)))
    failed = status.get("failed") or {}
    n_cells = len(status.get("cells") or [])
    st.caption(f"`{folder}` · {len(rows)} of {n_cells} cells finished" + (f" · {len(failed)} failed" if failed else ""))
    if failed:
        with st.expander(f"{len(failed)} failed cells"):
            for key, err in failed.items():
                st.markdown(f"**{key}**")
                st.code(err, language=None)
    if not rows:
        st.info("This sweep has no finished cells yet — rerun the same `workbench figure2` / `workbench sweep` "
                "command to continue it.", icon="ℹ️")
        return
    from workbench.plots.threat import METRICS, plot_metric_vs_p

    present = [m for m in METRICS if any(m in r for r in rows)]
    safety = next((m for m in ("hs", "refusal_harmful") if m in present), None)
    default = [m for m in (safety, "fa_sst2") if m in present] or present[:2]
    chosen = st.multiselect("Metrics", present, default=default, format_func=axis_title, key="threat-metrics")
    if "hs" not in present:
        st.caption("HS is not in these runs' metrics (the judge was not part of their evaluation); the refusal "
                   "rate on harmful prompts is the keyword-based counterpart.")
    for m in chosen:
        st.plotly_chart(plot_metric_vs_p(rows, m), theme=None, key=f"threat-{m}", width="content")
    table = []
    for r in sorted(rows, key=lambda r: (r["model_label"], r["attack"], r["p"], r["seed"])):
        table.append({"model": r["model_label"], "attack": r["attack"], "p": r["p"], "seed": r["seed"],
                      **{axis_title(m): fmt_rate(r.get(m)) for m in present},
                      "run": Path(r["run"]).name})
    st.dataframe(table, hide_index=True, width="stretch")
