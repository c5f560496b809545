"""A tiny ascent study (`workbench.studies.ascent`) for the explorer fixture and tests/test_study_ascent.py:
tiny-llama, the tiny preset, kinds ce and npo at one weight, into `<root>/study-ascent`."""
from __future__ import annotations

from pathlib import Path

KINDS = ["ce", "npo"]
WEIGHTS = [1.0]


def ascent_spec(**update):
    """The fixture's study spec, with `update` applied (other limits, kinds, p)."""
    from workbench.studies.ascent_spec import study_spec

    return study_spec("tiny-llama", KINDS, WEIGHTS, p=0.25, seed=0, preset_name="tiny").model_copy(update=update)


def build_ascent_study(root: Path, progress: bool = False) -> Path:
    from workbench.studies.ascent import run_study

    return run_study(ascent_spec(), Path(root) / "study-ascent", progress=progress, formats=("html",))
