"""Studies tab: one view per open-question study (workbench/studies), chosen with a radio button.

Each view is a module `apps/tabs/study_<name>.py` with TITLE and `render(root)`; it reads the study's run folders
under the runs root and never trains.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from apps.tabs import study_ascent, study_basins, study_safety_params

VIEWS: tuple = (study_safety_params, study_basins, study_ascent)  # in the order of docs/open-questions.md

TITLE = "Studies"


def render(root: Path) -> None:
    if not VIEWS:
        st.info("No study views are installed.")
        return
    titles = [v.TITLE for v in VIEWS]
    choice = st.radio("Study", titles, horizontal=True, key="study_view")
    VIEWS[titles.index(choice)].render(root)
