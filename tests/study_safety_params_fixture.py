"""A tiny safety-params study run (`workbench.studies.safety_params`) for the explorer, notebook and figure tests:
three criteria, two k, toy sizes, on the fixture's aligned tiny-llama run (seconds)."""
from __future__ import annotations

from pathlib import Path

TINY_STUDY = dict(criteria=["wanda", "random", "delta"], k=[1.0, 5.0], n_calibration=4, n_eval_prompts=4,
                  n_utility=4, max_new_tokens=4, pq_grid=[0.05])


def build_safety_params_study(root: Path, aligned: str | Path) -> Path:
    """The study on `aligned` (an align run folder, whose record names its base) → `root`/study-safety-params."""
    from workbench.studies.safety_params import make_spec, run_study

    return run_study(make_spec(**TINY_STUDY), str(aligned), Path(root) / "study-safety-params", formats=(),
                     progress=False)
