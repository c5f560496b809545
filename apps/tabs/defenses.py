"""Defenses: the defense leaderboard (`workbench.leaderboard.build`, the one `workbench leaderboard` writes).

One row per attacked model, whatever stage defended it: an attack on an aligned model (alignment stage; `sft` is
the baseline), a defended fine-tuning (`workbench attack --defense`) or a repair. Alignment-stage rows also carry
the aligned model's own rates before the attack. Every attack (p, n) is its own group: a defense is judged
against SFT under the same attack, never across attacks.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from apps.tabs import common
from workbench.leaderboard import Leaderboard, build
from workbench.plots.leaderboard import plot_metric
from workbench.vocabulary import BOARD_STAGES, short_title

TITLE = "Defenses"
LOWER_IS_BETTER = {"hs", "hs_plus", "refusal_benign"}
# Archived grids committed with the repository (`workbench runs archive`): what the tab shows when the runs root
# holds no attacked model yet, so a first look at the explorer already compares defenses on the real model.
ARCHIVE = Path(__file__).resolve().parents[2] / "results"


@st.cache_data(show_spinner=False)
def leaderboard(root: str, fp: tuple) -> Leaderboard | None:
    try:
        return build(root)
    except ValueError:  # no attacked models under this root
        return None


@st.cache_data(show_spinner=False)
def paired_vs_sft(root: str, fp: tuple, stages: tuple, metric: str) -> list[dict]:
    """Each defended model after the attack against plain SFT after the same attack, on the same prompts."""
    board = leaderboard(root, fp)
    return board.select(stages).vs_sft((metric,)) if board else []


def archived_grids(archive: Path = ARCHIVE) -> list[Path]:
    """The folders under `archive` holding attacked models, the defense grid first."""
    grids = [p for p in sorted(archive.iterdir()) if p.is_dir() and any(p.rglob("config.json"))] \
        if archive.is_dir() else []
    return sorted(grids, key=lambda p: p.name != "defense-grid")


def render(root: Path) -> None:
    fp = common.fingerprint(root)
    board = leaderboard(str(root), fp)
    if board is None:
        common.empty("attacked models (attack, defend or repair runs) under this runs root",
                     f"workbench align --model tiny-llama --defense sft --out {root}  &&  "
                     f"workbench attack --model <the align run folder> --out {root}")
        grids = [g for g in archived_grids() if leaderboard(str(g), common.fingerprint(g)) is not None]
        if not grids:
            return
        root = st.selectbox("Meanwhile, an archived grid of the real model (results/)", grids,
                            format_func=lambda p: p.name, key="def-archive")
        fp = common.fingerprint(root)
        board = leaderboard(str(root), fp)
    present = [s for s in BOARD_STAGES if any(r.stage == s for r in board.rows)]
    c1, c2 = st.columns(2)
    with c1:
        chosen = st.multiselect("Stage", present, default=present, key="def-stages",
                                help="Plain-SFT rows stay: every defense is compared with SFT under the same attack.")
    board = board.select(tuple(chosen))
    if not board.rows:
        st.info("No runs of the chosen stages — widen the stage filter.", icon="ℹ️")
        return
    with c2:
        metric = st.selectbox("Metric", board.metrics, format_func=short_title, key="def-metric")
    lower_better = metric in LOWER_IS_BETTER

    def robustness(r):  # within an attack, the most robust defense first
        v = (r.rates.get(metric) or {}).get("value")
        return r.attack, r.p if r.p is not None else -1, float("inf") if v is None else (v if lower_better else -v)

    table = []
    for r in sorted(board.rows, key=robustness):
        before, after = r.aligned_rates.get(metric), r.rates.get(metric)
        table.append({"attack": r.attack, "p": r.p, "method": r.method, "stage": r.stage, "defense": r.defense,
                      "aligned with": r.aligned_with, "seed": r.seed,
                      f"before the attack: {short_title(metric)}": before["value"] if before else None,
                      f"after the attack: {short_title(metric)}": after["value"] if after else None,
                      "95 % low": after["low"] if after else None, "95 % high": after["high"] if after else None,
                      "n": after.get("n") if after else None, "run": Path(r.run).name})
    percent = [k for k in table[0] if k.startswith(("before", "after", "95 %"))]
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={k: st.column_config.NumberColumn(k, format="%.1f%%") for k in percent})
    st.plotly_chart(plot_metric(board, metric), theme=None, key=f"def-fig-{metric}", width="content")
    st.caption("One panel per attack. Bars: each attacked model and, for alignment-stage defenses, the aligned "
               "model before the attack; whiskers are 95 % Wilson intervals. `workbench leaderboard` writes the "
               "same board as Markdown, CSV and figures.")
    paired = paired_vs_sft(str(root), fp, tuple(chosen), metric)
    if paired:
        st.subheader(f"After the attack, against SFT on the same prompts: {short_title(metric)}")
        st.dataframe([{"defense": d["defense"], "stage": d["stage"], "attack": d["attack"], "p": d["p"],
                       "defense − SFT (points)": d["value"], "95 % low": d["low"], "95 % high": d["high"],
                       "flagged for the defense only": d["only_a"], "for SFT only": d["only_b"],
                       "McNemar p": d["p_value"], "prompts": d["n"], "seed": str(d["seed"]),
                       "detectable (MDE, points)": d["mde"]} for d in paired],
                     hide_index=True, width="stretch",
                     column_config={k: st.column_config.NumberColumn(k, format="%+.1f")
                                    for k in ("defense − SFT (points)", "95 % low", "95 % high")})
        st.caption("Both models answered the same prompts, so only the prompts where they disagree carry evidence: "
                   "exact McNemar test on those (two-sided, unadjusted) and a paired-bootstrap interval of the "
                   "difference. Two overlapping Wilson intervals do not mean 'no difference', nor the reverse. "
                   "MDE: the smallest difference the test detects with power 0.8 at this n, planned from the "
                   "disagreement rate pooled over the board; seeds joined by + are combined as strata.")
