"""Inside the model: what the mechanistic analyses found, read from analysis run folders.

One section per analysis (probe accuracy, refusal signal, drift, activation patching, logit attribution),
each drawn by the analysis' own plots module (`ANALYSES` in `workbench.analysis`). Registered analyses that no
tab claims, and run folders of analyses this workbench does not register (shown with the figures they hold),
appear under "Other analyses".
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from apps.tabs import common
from workbench import figures as wf
from workbench.vocabulary import analysis_key

TITLE = "Inside the model"
# (analysis name, section title, what it shows)
SECTIONS = (
    ("probing", "Probe accuracy", "Linear probes per layer: where harmful and harmless requests separate."),
    ("refusal-direction", "Refusal signal", "The refusal direction, its ablation/addition effects and the "
                                            "refusal signal of each model per layer."),
    ("drift", "Drift", "How far the hidden states moved between two models (or along fine-tuning)."),
    ("patching", "Activation patching", "Which layers, positions and heads carry refusal."),
    ("logit-attribution", "Logit attribution", "Direct contributions of components to the refusal logit difference."),
)
ELSEWHERE = {"landscape", "wanda"}  # shown in the Landscape and Parameters tabs


def command(name: str, root: Path) -> str:
    name = wf.registered_name(name) or name
    return (f"workbench analyze {name} --model <aligned run folder> --compare <attacked run folder> "
            f"--out {root}/analysis-{name}")


def render(root: Path) -> None:
    from workbench.analysis import ANALYSES

    known = {n for n, _, _ in SECTIONS} | ELSEWHERE
    found = {analysis_key(r["analysis"] or "") for r in common.runs(root, "analysis")}
    others = sorted(n for n in (found | set(ANALYSES)) - known if n)
    titles = [t for _, t, _ in SECTIONS] + (["Other analyses"] if others else [])
    section = st.segmented_control("Section", titles, default=titles[0], key="inside-section",
                                   label_visibility="collapsed") or titles[0]
    for name, title, what in SECTIONS:
        if section == title:
            st.subheader(title)
            st.caption(what)
            common.analysis_section(root, name, title, command(name, root), key=f"inside-{name}")
    if section == "Other analyses":
        for name in others:
            st.subheader(name.replace("-", " "))
            common.analysis_section(root, name, name.replace("-", " ").capitalize(), command(name, root),
                                    key=f"inside-{name}")
