"""Runs: browse every run folder under the root: config, metrics, samples (filterable), training curves (the task
loss and a defense's own terms), files."""
from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from apps.tabs import common
from workbench.plots.training import plot_training, training_series
from workbench.vocabulary import fmt_rate, long_title, rate_keys

TITLE = "Runs"


@st.cache_data(show_spinner=False)
def training_record(path: str) -> dict:
    """The run's training.json (losses, per-step defense diagnostics), or {} for none / an unreadable one."""
    p = Path(path) / "training.json"
    if not p.is_file():
        return {}
    try:
        record = json.loads(p.read_text())
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def render(root: Path) -> None:
    recs = common.runs(root)
    if not recs:
        common.empty("run folders under this runs root", f"workbench quickstart --model tiny-llama --out {root}")
        return
    kinds = sorted({r["kind"] for r in recs})
    c1, c2 = st.columns([2, 3])
    with c1:
        chosen = st.multiselect("Kind", kinds, default=kinds, key="runs-kinds")
    with c2:
        text = st.text_input("Folder contains", key="runs-text", placeholder="e.g. harmful_ft-p0.1")
    recs = [r for r in recs if r["kind"] in chosen and text.lower() in r["folder"].lower()]
    if not recs:
        st.info("No runs match these filters.", icon="ℹ️")
        return
    keys = rate_keys([r["metrics"] for r in recs])[:5]
    table = [{"folder": r["folder"], "kind": r["kind"], "name": r["name"], "created": r["created"], "seed": r["seed"],
              **{long_title(k): fmt_rate(r["metrics"].get(k)) for k in keys}} for r in reversed(recs)]
    st.dataframe(table, hide_index=True, width="stretch", height=min(420, 38 + 35 * len(table)))

    rec = common.pick_run(recs, "Run", key="runs-pick")
    st.caption(f"`{rec['path']}`")
    cfg_tab, met_tab, smp_tab, train_tab, files_tab = st.tabs(["config", "metrics", "samples", "training", "files"])
    with cfg_tab:
        st.json(common.read_config(rec["path"]), expanded=2)
    with met_tab:
        if rec["metrics"]:
            common.metrics_table(rec["metrics"])
        else:
            st.caption("no metrics.json")
    with smp_tab:
        samples(rec["path"])
    with train_tab:
        training = training_record(rec["path"])
        if training_series(training):
            st.plotly_chart(plot_training({rec["name"]: training}), theme=None, key=f"runs-loss-{rec['path']}",
                            width="content")
        else:
            st.caption("no training curve (not a training run)")
    with files_tab:
        files = sorted(p for p in Path(rec["path"]).rglob("*") if p.is_file())
        st.dataframe([{"file": str(p.relative_to(rec["path"])), "KiB": round(p.stat().st_size / 1024, 1)}
                      for p in files], hide_index=True, width="stretch")


def samples(path: str) -> None:
    records = common.read_samples(path)
    if not records:
        st.caption("no samples.jsonl")
        return
    sets = sorted({str(r.get("set", "")) for r in records})
    c1, c2, c3 = st.columns([2, 2, 3])
    with c1:
        chosen = st.multiselect("Set", sets, default=sets, key=f"smp-set-{path}")
    with c2:
        flag = st.selectbox("Refusal", ["any", "refuses", "does not refuse"], key=f"smp-flag-{path}")
    with c3:
        text = st.text_input("Prompt or answer contains", key=f"smp-text-{path}")
    out = []
    for r in records:
        if str(r.get("set", "")) not in chosen:
            continue
        if flag != "any" and "refusal" in r and bool(r["refusal"]) != (flag == "refuses"):
            continue
        if flag != "any" and "refusal" not in r:
            continue
        if text and text.lower() not in (str(r.get("prompt", "")) + " " + str(r.get("answer", ""))).lower():
            continue
        out.append(r)
    st.caption(f"{len(out)} of {len(records)} samples")
    st.dataframe(out, hide_index=True, width="stretch")
