"""Reproducible studies of the survey's three open research questions (docs/open-questions.md).

One module per study, each a deterministic function of a typed spec and a seed that writes one run folder of kind
"study" (read by `workbench figures` and the explorer's Studies tab through `STUDIES`):

- `safety_params`: which criterion finds the safety-critical weights, and when it should act (Future Direction I);
- `basins`: whether alignment-stage defenses widen the safety basin or only lower the harmful loss (II);
- `ascent`: a gradient-ascent term that does not collapse the model (III).

A study sits beside the sweep and the leaderboard: it composes steps, analyses and defenses, never the CLI.
"""
from __future__ import annotations

import importlib

# The studies by run name (a study's run folder is `study-<name>-<timestamp>`, record kind "study"): name ->
# (module with `load_result(folder)`, plots module with `figures(result)`), imported lazily (torch, plotly).
STUDIES: dict[str, tuple[str, str]] = {
    "safety-params": ("workbench.studies.safety_params", "workbench.plots.safety_params"),
    "basins": ("workbench.studies.basins", "workbench.plots.basins"),
    "ascent": ("workbench.studies.ascent_summary", "workbench.plots.study_ascent"),
}


def get_study(name: str):
    """(study module, plots module) of a registered study; ValueError for an unknown one."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; studies: {', '.join(STUDIES)}")
    mod, plots = STUDIES[name]
    return importlib.import_module(mod), importlib.import_module(plots)
