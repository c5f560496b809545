"""Fixture runs for the explorer, notebook and figure tests: one tiny runs root per test session.

`explorer_runs_root(tmp_path_factory)` builds it once (quickstart on tiny-llama, a 2 × 2 threat-model sweep,
and every registered analysis at toy sizes on the aligned/attacked pair) and every later caller in the same
session, from any test module, gets the same folder back. An analysis that raises while building is skipped with
a warning: its own tests (tests/test_analysis_*.py) report the failure, and the explorer, notebook and figure tests
still see the rest.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

# Toy sizes for tiny-llama (seconds each); the notebooks' "tiny" size uses the same numbers.
TINY_ANALYSES: dict[str, dict] = {
    "drift": dict(n_samples=4),
    "landscape": dict(slices=["1d", "2d", "line"], n_points=5, grid_points=3, line_points=5, n_prompts=4,
                      max_new_tokens=3),
    "wanda": dict(n_calibration=8, q=0.05, p=0.05, n_eval_prompts=4, n_utility=4, max_new_tokens=4),
    "probing": dict(n_train=8, n_eval=4, folds=2),
    "refusal-direction": dict(n_train=4, n_val=2, n_generate=2, max_new_tokens=4, n_boot=100, n_samples=1),
    "patching": dict(n_prompts=2, positions=2, window=2, n_boot=100,
                     components=["resid", "resid_pos", "attn", "heads"]),
    "logit-attribution": dict(n_prompts=2, n_boot=100),
}
SINGLE_MODEL = {"wanda"}  # analyses run on the aligned model alone
STUDY_FOLDERS = ("study-ascent",)  # the studies' run folders (tests/study_*_fixture.py) under the fixture root
SWEEP_PS = [0.0, 0.5]


def build(root: Path) -> dict[str, Path]:
    """Write the fixture runs under `root`; returns {"aligned", "attacked", "defended", "non-aligned", "sweep"} paths.

    One torch thread: tiny-llama's ops are far too small to share, and on a busy 2-core machine the second
    thread's synchronisation made this build ~10× slower (measured: ~20 s with 1 thread, 3+ min with 2).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build(root)
    finally:
        torch.set_num_threads(threads)


def _build(root: Path) -> dict[str, Path]:
    from study_ascent_fixture import build_ascent_study
    from study_basins_fixture import build_basins_study

    from workbench.config import DefenseSpec
    from workbench.figures import registered_name
    from workbench.pipeline import quickstart
    from workbench.presets import preset
    from workbench.steps import attack, run_analysis
    from workbench.sweep import run_sweep

    paths = quickstart("tiny-llama", root, progress=False)
    aligned, attacked = str(paths["aligned"]), str(paths["attacked"])
    # a fine-tuning-stage defense against the quickstart's attack: the Defenses tab pairs it with SFT
    p = preset("tiny")
    paths["defended"] = attack(p.attack, aligned, root, 0, p.eval, progress=False, defense=DefenseSpec(name="freeze"))
    run_sweep({"non-aligned": "tiny-llama", "aligned": aligned}, ["harmful_ft"], SWEEP_PS, [0], 8, "tiny", "local",
              None, root / "figure2", progress=False)
    for name, params in TINY_ANALYSES.items():
        key = registered_name(name)
        assert key is not None, f"TINY_ANALYSES names {name!r}, which is not a registered analysis"
        try:
            run_analysis(key, aligned, None if name in SINGLE_MODEL else attacked, 0, root / f"analysis-{key}",
                         params, formats=("html",) if name == "drift" else (), progress=False)
        except Exception as err:  # one analysis that breaks must not sink the tests of everything else
            warnings.warn(f"fixture analysis {key} failed: {type(err).__name__}: {err}", stacklevel=1)
            shutil.rmtree(root / f"analysis-{key}", ignore_errors=True)
    from study_safety_params_fixture import build_safety_params_study  # the safety-params study (#25)

    build_safety_params_study(root, aligned)
    paths["study-basins"] = build_basins_study(root)  # the Studies tab's basin view (question 2)
    paths["study-ascent"] = build_ascent_study(root)  # the Studies tab's ascent view (question 3)
    return {**{k: v for k, v in paths.items() if not k.startswith("_")}, "sweep": root / "figure2"}


def outside_studies(root: Path, kind: str | None = None) -> list:
    """The fixture root's runs of `kind` that are not a study's (a study's cells are runs of every kind: tests that
    count the quickstart's runs leave them out)."""
    from workbench.runs import list_runs

    return [r for r in list_runs(root, kind) if r.path.relative_to(root).parts[0] not in STUDY_FOLDERS]


def study_run_names(root: Path) -> set[str]:
    """Folder names of the studies' runs under the fixture root."""
    from workbench.runs import list_runs

    return {r.path.name for folder in STUDY_FOLDERS for r in list_runs(root / folder)}


def explorer_runs_root(tmp_path_factory) -> Path:
    """The session's fixture runs root, built on first use (shared by every test module of the session)."""
    root = tmp_path_factory.getbasetemp() / "explorer-runs"
    done = root / ".fixture-done"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        build(root)
        done.write_text("ok\n")
    return root
