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
from workbench.config import AlignSpec
from workbench.presets import default_preset, preset
from workbench.runs import model_ref, open_run
from workbench.vocabulary import short_title


def quickstart(model: str, out: str | Path, seed: int = 0, preset_name: str | None = None,
               progress: bool = True, resume: bool = False, reported_sets: bool = False,
               dtype: str | None = None, analysis: bool = True, aligned: str | Path | None = None) -> dict[str, Path]:
    """Returns {"non-aligned", "aligned", "attacked", "repaired", "refusal-direction"} → run folder paths.

    The models are evaluated on the preset's `quickstart` sets (a fixed workload, so `make run`'s time compares across
    versions), or with `reported_sets` on the `eval` sets every reported table uses (the standard harmful set).
    `dtype` ("float32", "bfloat16", "auto"): the precision of every training and generation (None: the preset's).

    With `resume`, training steps continue from their checkpoints in `<out>/.incomplete/`. `analysis=False` stops
    after the four evaluated models (what a comparison of their metrics needs, e.g. scripts/dtype_equivalence.py).

    `aligned`: an align run of `model` to start from (e.g. the setting `scripts/choose_alignment.py` chose on the
    validation split), evaluated on the same sets instead of aligning again; its spec must be the preset's
    alignment mix and seed, so the validation and test prompts stay disjoint from what it trained on.
    """
    p = preset(preset_name or default_preset(model), seed).in_precision(dtype)
    sets = p.eval if reported_sets else p.quickstart
    if aligned is not None:
        check_alignment_mix(aligned, model, p.align, seed)  # before any work
    t0 = time.perf_counter()
    paths = {"non-aligned": steps.evaluate_model(model, out, seed, sets, name="non-aligned", progress=progress)}
    if aligned is None:
        paths["aligned"] = aligned = steps.align(p.align, model, out, seed, sets, progress=progress, resume=resume)
    else:  # the aligned row is an eval run of the given model; the attack and the analysis use the model itself
        paths["aligned"] = steps.evaluate_model(str(aligned), out, seed, sets, name="aligned", progress=progress)
    paths["attacked"] = steps.attack(p.attack, str(aligned), out, seed, sets, progress=progress, resume=resume)
    paths["repaired"] = steps.repair(p.repair, {}, str(paths["attacked"]), out, seed, progress=progress,
                                     dtype=dtype)
    if analysis:
        paths["refusal-direction"] = steps.run_analysis(
            "refusal-direction", str(aligned), str(paths["attacked"]), seed,
            Path(out) / f"analysis-refusal-direction-{paths['attacked'].name}", p.inside, progress=progress)
    paths["_seconds"] = time.perf_counter() - t0
    return paths


def check_alignment_mix(aligned: str | Path, model: str, spec: AlignSpec, seed: int) -> None:
    """ValueError unless `aligned` is an align run of `model` on `spec`'s mix at `seed`: the held-out and validation
    prompts are chosen against that mix, so a run trained on another one could have seen them."""
    run = open_run(aligned, kind="align")
    theirs = run.spec.align
    if run.base != model_ref(model) or run.seed != seed or (theirs.n_harmful, theirs.n_benign, theirs.benign) != (
            spec.n_harmful, spec.n_benign, spec.benign):
        raise ValueError(f"{aligned} is not an alignment of {model} on the preset's mix at seed {seed} "
                         f"(it aligned {run.base} on {theirs.n_harmful} harmful / {theirs.n_benign} "
                         f"{theirs.benign} samples at seed {run.seed})")


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
