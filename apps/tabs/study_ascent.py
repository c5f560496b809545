"""Studies → Ascent: a gradient-ascent term that does not collapse the model (docs/open-questions.md, question 3).

Reads study runs of kind "study", name "ascent" (`workbench study ascent`, `workbench.studies.ascent`) under the runs
root, through the STUDIES registry (`workbench.figures.load_study`): the configuration chosen per kind on the
validation split with its test numbers, every cell's validation and collapse numbers, and the study's figures
(`workbench.plots.study_ascent`). Never trains.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from apps.tabs import common
from workbench.plots.study_ascent import figures
from workbench.studies.ascent_spec import STUDY
from workbench.studies.ascent_summary import AscentSummary
from workbench.vocabulary import fmt_rate

TITLE = "Ascent without collapse (Q3)"


def _rate(r) -> str:
    return "—" if r is None else fmt_rate(r)


def chosen_table(s: AscentSummary) -> list[dict]:
    rows = []
    for c in [None, *s.chosen]:
        cell = s.baseline if c is None else (s.cell(c.key) if c.key else None)
        test = cell.test if cell is not None else None
        rows.append({"kind": "sft (control)" if c is None else c.kind,
                     "weight": None if c is None else c.weight,
                     "why": "no ascent term" if c is None else c.reason,
                     "test HS": _rate(test.hs if test else None), "test HS+": _rate(test.hs_plus if test else None),
                     f"test FA {s.task or ''}".strip(): _rate(test.fa if test else None)})
    return rows


def cells_table(s: AscentSummary) -> list[dict]:
    rows = []
    for c in [s.baseline, *s.cells]:
        v, k = c.validation, c.collapse
        rows.append({"cell": c.key, "validation HS": _rate(v.hs if v else None),
                     "validation HS+": _rate(v.hs_plus if v else None), "validation FA": _rate(v.fa if v else None),
                     "aligned: incoherent": _rate(k.incoherent if k else None),
                     "aligned: non-words %": None if k is None or k.non_word_share is None
                     else round(100 * k.non_word_share, 1),
                     "aligned: benign ppl": None if k is None else round(k.benign_ppl, 2),
                     "excluded because": ", ".join(c.failures) or ("—" if c.key != "sft" else "control")})
    return rows


def render(root: Path) -> None:
    recs = common.study_runs(root, STUDY)
    if not recs:
        common.empty("ascent study runs", f"workbench study ascent --model <base model> --out {root}/study-ascent")
        return
    rec = common.pick_run(recs, "Ascent study", key="ascent-study")
    s, err = common.read_study(rec["path"])
    if err:
        st.warning(f"could not read this study run ({err})")
        return
    sp = s.spec
    st.caption(f"model `{sp.model}` · attack p = {sp.p:g} · preset {sp.preset} · seed {sp.seed} · NPO β = "
               f"{sp.beta:g} · limits vs sft: incoherent +{sp.max_incoherent_rise:g} pts, non-words "
               f"+{sp.max_non_word_rise:g} pts, perplexity × {sp.max_ppl_ratio:g}, FA −{sp.max_fa_drop:g} pts · "
               f"study folder `{rec['path']}`")
    st.markdown("**Chosen on validation, reported on test** (per kind: the lowest post-attack validation HS "
                "among the weights that neither collapsed the aligned model nor lost FA)")
    st.dataframe(chosen_table(s), hide_index=True, width="stretch")
    st.markdown("**Every cell on the validation split** (post-attack HS / FA; the aligned model's collapse)")
    st.dataframe(cells_table(s), hide_index=True, width="stretch")
    common.show_figures(figures(s), key="ascent")
