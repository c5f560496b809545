"""Defenses: a leaderboard of align / defend / repair runs, read from their metrics.json.

Each row is one defended model (alignment stage: `workbench align --defense`; fine-tuning stage:
`workbench attack --defense`; post-fine-tuning: repair runs) with its rates and, when a harmful
fine-tuning attack was run on top of it, the attacked model's rates: the number a defense is judged by.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from apps.tabs import common
from workbench import figures as wf

TITLE = "Defenses"
LOWER_IS_BETTER = {"hs", "hs_plus", "refusal_benign"}


@st.cache_data(show_spinner=False)
def leaderboard(root: str, fp: tuple) -> list[dict]:
    return wf.leaderboard(root)


@st.cache_data(show_spinner=False)
def paired_vs_sft(root: str, fp: tuple, metric: str) -> list[dict]:
    """Each defended model after the attack against plain SFT after the same attack, on the same prompts."""
    from workbench.leaderboard import build

    try:
        return build(root).vs_sft((metric,))
    except ValueError:  # no attacked models under this root
        return []


def render(root: Path) -> None:
    rows = leaderboard(str(root), common.fingerprint(root))
    if not rows:
        common.empty("align, defend or repair runs under this runs root",
                     f"workbench align --model tiny-llama --defense sft --out {root}")
        return
    stages = [s for s in wf.STAGES.values() if any(r["stage"] == s for r in rows)]
    c1, c2 = st.columns(2)
    with c1:
        chosen = st.multiselect("Stage", list(wf.STAGES.values()), default=stages, key="def-stages")
    rows = [r for r in rows if r["stage"] in chosen]
    if not rows:
        st.info("No runs of the chosen stages — widen the stage filter.", icon="ℹ️")
        return
    metrics = wf.leaderboard_metrics(rows)
    if not metrics:
        st.info("These runs have no rate metrics in their metrics.json yet.", icon="ℹ️")
        st.dataframe([{k: r[k] for k in ("defense", "stage", "base", "seed", "run")} for r in rows], hide_index=True)
        return
    with c2:
        metric = st.selectbox("Metric", metrics, format_func=wf.rate_title, key="def-metric")
    if not any(k.startswith("attacked_") for r in rows for k in r):
        st.caption("None of these defended models has been attacked yet: run "
                   f"`workbench attack --model <defended run folder> --out {root}` to add the after-attack column.")
    lower_better = metric in LOWER_IS_BETTER

    def robustness(r):  # the after-attack number when there is one, else the defended model's
        v = r.get(f"attacked_{metric}", r.get(metric))
        return float("inf") if v is None else (v if lower_better else -v)

    rows = sorted(rows, key=robustness)
    table = []
    for r in rows:
        row = {"defense": r["defense"], "stage": r["stage"], "base": r["base"], "seed": r["seed"]}
        for m in metrics:
            row[wf.rate_title(m)] = r.get(m)
            if f"attacked_{m}" in r:
                row[f"after attack: {wf.rate_title(m)}"] = r.get(f"attacked_{m}")
        row["run"] = r["run"]
        row["attack run"] = r.get("attacked_run", "—")
        table.append(row)
    percent = {k for row in table for k in row if k.startswith("after attack: ")} | {wf.rate_title(m) for m in metrics}
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={k: st.column_config.NumberColumn(k, format="%.1f%%") for k in percent})
    st.plotly_chart(wf.plot_leaderboard(rows, metric), theme=None, key=f"def-fig-{metric}", width="content")
    st.caption("Bars: the defended model and, where one was run, the same model after the harmful fine-tuning "
               "attack; whiskers are 95 % Wilson intervals. Sorted so the most robust defense comes first.")
    paired = paired_vs_sft(str(root), common.fingerprint(root), metric)
    if paired:
        st.subheader(f"After the attack, against SFT on the same prompts: {wf.rate_title(metric)}")
        st.dataframe([{"defense": d["defense"], "stage": d["stage"], "attack": d["attack"], "p": d["p"],
                       "defense − SFT (points)": d["value"], "95 % low": d["low"], "95 % high": d["high"],
                       "flagged for the defense only": d["only_a"], "for SFT only": d["only_b"],
                       "McNemar p": d["p_value"], "prompts": d["n"]} for d in paired],
                     hide_index=True, width="stretch",
                     column_config={k: st.column_config.NumberColumn(k, format="%+.1f")
                                    for k in ("defense − SFT (points)", "95 % low", "95 % high")})
        st.caption("Both models answered the same prompts, so only the prompts where they disagree carry evidence: "
                   "exact McNemar test on those (two-sided, unadjusted) and a paired-bootstrap interval of the "
                   "difference. Two overlapping Wilson intervals do not mean 'no difference', nor the reverse.")
