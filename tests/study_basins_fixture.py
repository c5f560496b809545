"""Tiny inputs for the basin study's tests and the explorer fixture: align and attack run folders written directly
(no training), each holding a saved tiny-llama as its model. The HS numbers in their metrics.json are test inputs
chosen by the test, not measurements."""
from __future__ import annotations

import shutil
from pathlib import Path

# A study small enough for seconds on tiny-llama.
TINY_MEASURE = dict(n_directions=2, n_points=3, span=0.5, line_points=3, line_range=(0.0, 1.0), n_prompts=2,
                    max_new_tokens=2, batch_size=2, n_pairs=2, max_len=64, loss_batch_size=2)


def align_run(root: Path, name: str, model_dir: Path, seed: int = 0) -> Path:
    """An align run named `name` whose model/ is a copy of `model_dir`."""
    from workbench.runs import RunWriter

    with RunWriter(root, "align", name, {"model": "tiny-llama"}, seed=seed) as w:
        shutil.copytree(model_dir, w.path / "model")
        w.write_metrics({})
    return w.final_path


def attack_run(root: Path, base: str | Path, hs: float, p: float = 0.1, seed: int = 0, kind: str = "attack",
               model_dir: Path | None = None, name: str = "harmful_ft", n: int = 300, max_steps: int | None = None
               ) -> Path:
    """A `kind` run ("attack" or "defend") of attack `name` at harmful ratio p on `base`, with HS `hs` (%); its
    recorded training (n samples, max_steps) is what `--reattack` would re-train."""
    from workbench.config import AttackSpec, DataSpec, DefenseSpec, TrainSpec
    from workbench.runs import RunWriter

    attack = AttackSpec(name=name, data=DataSpec(p=p, n=n, seed=seed), train=TrainSpec(max_steps=max_steps,
                                                                                      batch_size=4, seed=seed))
    spec = {"attack": attack.model_dump(), "model": str(base)}
    if kind == "defend":
        spec["defense"] = DefenseSpec(name="freeze").model_dump()
    with RunWriter(root, kind, f"{name}-p{p:g}", spec, seed=seed) as w:
        if model_dir is not None:
            shutil.copytree(model_dir, w.path / "model")
        w.write_metrics({"hs": {"k": round(hs), "n": 100, "value": hs, "low": hs, "high": hs}})
    return w.final_path


def pair_root(root: Path, model_dirs: list[Path], hs: list[float], attacked_dir: Path | None = None) -> list[Path]:
    """One align run per model folder (named model-0, model-1, ...), each attacked once at p = 0.1 with the given HS;
    the first attack run keeps `attacked_dir` as its weights (so the first model has a line). Returns the align runs."""
    aligns = []
    for i, (d, h) in enumerate(zip(model_dirs, hs, strict=True)):
        a = align_run(root, f"model-{i}", d)
        attack_run(root, a, h, model_dir=attacked_dir if i == 0 else None)
        aligns.append(a)
    return aligns


def build_basins_study(root: Path) -> Path:
    """A finished tiny basin study under `root` (its inputs beside `root`, so no other tab lists them)."""
    import torch

    from workbench.models import save_tiny
    from workbench.studies.basins import BasinsSpec, run_basins
    from workbench.studies.basins_measure import MeasureSpec

    inputs = root.parent / f"{root.name}-basins-inputs"
    shutil.rmtree(inputs, ignore_errors=True)
    dirs = [save_tiny("tiny-llama", inputs / "models" / f"m{s}", s) for s in range(4)]
    pair_root(inputs / "runs", dirs[:3], [10.0, 30.0, 20.0], attacked_dir=dirs[3])
    spec = BasinsSpec(roots=[str(inputs / "runs")], measure=MeasureSpec(**TINY_MEASURE), n_boot=200)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_basins(spec, root / "study-basins", seed=0, progress=False, formats=("html",))
    finally:
        torch.set_num_threads(threads)
