"""Quickstart: non-aligned → safety SFT → harmful fine-tuning attack → SafeLoRA repair, all four evaluated on the
same prompts, then the refusal direction of the aligned vs the attacked model.

One command gives the explorer everything it opens on: the three models of Compare (aligned, attacked, repaired) and
a real Inside tab, instead of an empty Repaired slot that asks for another long command. Sizes come from
`workbench.presets` (`full` for the real model, `tiny` for tests); the preset names the repair and the analysis sizes.
"""
from __future__ import annotations

import time
from pathlib import Path

from workbench import steps
from workbench.presets import default_preset, preset
from workbench.runs import open_run
from workbench.vocabulary import short_title


def quickstart(model: str, out: str | Path, seed: int = 0, preset_name: str | None = None,
               progress: bool = True, resume: bool = False, reported_sets: bool = False,
               dtype: str | None = None, analysis: bool = True) -> dict[str, Path]:
    """Returns {"non-aligned", "aligned", "attacked", "repaired", "refusal-direction"} → run folder paths.

    The models are evaluated on the preset's `quickstart` sets (a fixed workload, so `make run`'s time compares across
    versions), or with `reported_sets` on the `eval` sets every reported table uses (the standard harmful set).
    `dtype` ("float32", "bfloat16", "auto"): the precision of every training and generation (None: the preset's).

    With `resume`, training steps continue from their checkpoints in `<out>/.incomplete/`. `analysis=False` stops
    after the four evaluated models (what a comparison of their metrics needs, e.g. scripts/dtype_equivalence.py).
    """
    p = preset(preset_name or default_preset(model), seed).in_precision(dtype)
    sets = p.eval if reported_sets else p.quickstart
    t0 = time.perf_counter()
    paths = {"non-aligned": steps.evaluate_model(model, out, seed, sets, name="non-aligned", progress=progress)}
    paths["aligned"] = steps.align(p.align, model, out, seed, sets, progress=progress, resume=resume)
    paths["attacked"] = steps.attack(p.attack, str(paths["aligned"]), out, seed, sets, progress=progress,
                                     resume=resume)
    paths["repaired"] = steps.repair(p.repair, {}, str(paths["attacked"]), out, seed, progress=progress,
                                     dtype=dtype)
    if analysis:
        paths["refusal-direction"] = steps.run_analysis(
            "refusal-direction", str(paths["aligned"]), str(paths["attacked"]), seed,
            Path(out) / f"analysis-refusal-direction-{paths['attacked'].name}", p.inside, progress=progress)
    paths["_seconds"] = time.perf_counter() - t0
    return paths


EVALUATED = ("non-aligned", "aligned", "attacked", "repaired")  # the models with metrics; the rest are analyses
METRIC_COLUMNS = ("refusal_harmful", "refusal_benign", "hs", "hs_plus", "fa_sst2")  # titled by `short_title`


def results_table(paths: dict[str, Path]) -> list[dict]:
    """Rows of (model, metric cells) read back from the run folders, never from memory."""
    rows = []
    for label, path in paths.items():
        if label.startswith("_") or label not in EVALUATED:
            continue
        metrics = open_run(path).metrics
        cells = {short_title(key): metrics.get(key) for key in METRIC_COLUMNS if key in metrics}
        rows.append({"model": label, "run": str(path), **cells})
    return rows
