"""Quickstart: non-aligned → safety SFT → harmful fine-tuning attack → evaluation of all three.

Two presets: `full` (the real SmolLM2 numbers of DESIGN.md, ~15 min on 2 cores) and `tiny`
(seconds, for tests and `--model tiny-llama`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from workbench import steps
from workbench.config import AlignSpec, AttackSpec, DataSpec, EvalSpec, GenerationSpec, TrainSpec
from workbench.runs import open_run
from workbench.vocabulary import short_title


@dataclass(frozen=True)
class Preset:
    align: AlignSpec
    attack: AttackSpec
    eval: EvalSpec


def preset(name: str, seed: int = 0) -> Preset:
    if name == "full":
        train = TrainSpec(method="lora", lr=3e-4, epochs=2, batch_size=8, max_len=256, seed=seed)
        return Preset(
            align=AlignSpec(n_harmful=200, n_benign=400, train=train),
            attack=AttackSpec(name="harmful_ft", data=DataSpec(benign="sst2", harmful="harmful_qa", p=0.1, n=300,
                                                                seed=seed), train=train),
            eval=EvalSpec(n_harmful=100, n_benign=100, task="sst2", n_task=100, seed=seed,
                          generation=GenerationSpec(max_new_tokens=32, batch_size=25, seed=seed)),
        )
    if name == "tiny":
        train = TrainSpec(method="lora", lr=1e-3, epochs=1, batch_size=8, max_len=64, seed=seed, lora_r=4)
        return Preset(
            align=AlignSpec(n_harmful=16, n_benign=16, train=train),
            attack=AttackSpec(name="harmful_ft", data=DataSpec(benign="sst2", harmful="harmful_qa", p=0.25, n=16,
                                                                seed=seed), train=train),
            eval=EvalSpec(n_harmful=8, n_benign=8, task="sst2", n_task=8, seed=seed, judge_embedder="hashing",
                          generation=GenerationSpec(max_new_tokens=8, batch_size=8, seed=seed)),
        )
    raise ValueError(f"unknown preset {name!r}; use 'full' or 'tiny'")


def default_preset(model: str) -> str:
    return "tiny" if model.startswith("tiny") else "full"


def quickstart(model: str, out: str | Path, seed: int = 0, preset_name: str | None = None,
               progress: bool = True, resume: bool = False) -> dict[str, Path]:
    """Returns {"non-aligned": path, "aligned": path, "attacked": path} of the three run folders.

    With `resume`, training steps continue from their checkpoints in `<out>/.incomplete/`.
    """
    p = preset(preset_name or default_preset(model), seed)
    t0 = time.perf_counter()
    paths = {"non-aligned": steps.evaluate_model(model, out, seed, p.eval, name="non-aligned", progress=progress)}
    paths["aligned"] = steps.align(p.align, model, out, seed, p.eval, progress=progress, resume=resume)
    paths["attacked"] = steps.attack(p.attack, str(paths["aligned"]), out, seed, p.eval, progress=progress,
                                     resume=resume)
    paths["_seconds"] = time.perf_counter() - t0
    return paths


METRIC_COLUMNS = ("refusal_harmful", "refusal_benign", "hs", "hs_plus", "fa_sst2")  # titled by `short_title`


def results_table(paths: dict[str, Path]) -> list[dict]:
    """Rows of (model, metric cells) read back from the run folders, never from memory."""
    rows = []
    for label, path in paths.items():
        if label.startswith("_"):
            continue
        metrics = open_run(path).metrics
        cells = {short_title(key): metrics.get(key) for key in METRIC_COLUMNS if key in metrics}
        rows.append({"model": label, "run": str(path), **cells})
    return rows
