"""Archive run records: copy every finished run's records (not its weights) to another root, optionally keeping
LoRA-trained models as low-rank deltas. Above both `workbench.runs` (run folders) and `workbench.models` (the
low-rank delta), so neither needs the other for it.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from workbench.models import load_model
from workbench.models.lowrank import lowrank_delta, save_lowrank
from workbench.models.registry import MODELS
from workbench.runs import INCOMPLETE, base_chain, list_runs, open_run, write_json
from workbench.stress.study import STUDY_FILE

ARCHIVE_NOTE = "archive.json"  # written into each archived copy: where it came from and what was left behind


def archive_runs(root: str | Path, out: str | Path, max_file_bytes: int = 1_000_000,
                 lowrank_kinds: Iterable[str] = ()) -> list[Path]:
    """Copy the *records* of every finished run under `root` to the same relative place under `out`: configs,
    metrics, per-sample JSONL, training curves, analysis JSON — not model weights or checkpoints, nor any file
    over `max_file_bytes`. Why: a run's weights stay on the machine that trained it (hundreds of MB), but its
    numbers should outlive that machine, e.g. committed next to the docs they back, and a leaderboard or the
    explorer can read them later (the leaderboard links runs of a moved root by folder name).

    Runs of `lowrank_kinds` (e.g. "align") keep their model as a low-rank delta on the registered model under
    them (`workbench.models.lowrank`, a few MB for a LoRA run), so the copy can be loaded, attacked and analysed
    like the original; a run whose change is not low-rank (full fine-tuning) is refused with the reason.

    A stress study folder (`workbench stress`) also keeps its own small files beside its runs (`_archive_studies`):
    its report (stress.json, report.md), spec and Optuna database, so the leaderboard's worst-case column and the
    report outlive the runs' weights too.

    A run already present under `out` is left as it is (runs are immutable). Returns the archived copies.
    """
    lowrank_kinds = set(lowrank_kinds)
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise ValueError(f"--runs {root}: no such folder (a runs root holding finished run folders)")
    done = []
    runs = sorted(list_runs(root), key=lambda r: len(r.path.parts))  # a study before the runs nested inside it
    for run in runs:
        dest = out / run.path.relative_to(root)
        if dest.exists():
            continue
        # runs nested inside this one (a study's cells) are archived on their own, with their own note
        nested = [r.path for r in runs if r.path != run.path and r.path.is_relative_to(run.path)]
        kept, left = [], []
        for f in sorted(p for p in run.path.rglob("*") if p.is_file()):
            if any(f.is_relative_to(n) for n in nested):
                continue
            rel = f.relative_to(run.path)
            weights = rel.parts[0] in ("model", "checkpoint") and rel != Path("model/base.json")
            if weights or f.stat().st_size > max_file_bytes:
                left.append(str(rel))
                continue
            kept.append(rel)
        staging = out / INCOMPLETE / f"archive-{dest.name}"  # never listed as a run; renamed when whole
        shutil.rmtree(staging, ignore_errors=True)
        for rel in kept:
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(run.path / rel, staging / rel)
        note = {"archived_from": str(run.path.resolve()), "left_out": left, "max_file_bytes": max_file_bytes}
        if run.kind in lowrank_kinds and (run.path / "model" / "config.json").is_file():
            note["lowrank"] = _archive_lowrank(run.path, staging / "model")
        write_json(staging / ARCHIVE_NOTE, note)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, dest)
        done.append(dest)
    shutil.rmtree(out / INCOMPLETE, ignore_errors=True)
    return done + _archive_studies(root, out, max_file_bytes)


def _archive_studies(root: Path, out: Path, max_file_bytes: int) -> list[Path]:
    """The files directly inside each stress study folder under `root` (not its runs, which `archive_runs` copies;
    not hidden files such as its driver lock, nor files over `max_file_bytes`), where not archived already."""
    copied = []
    for marker in sorted(root.rglob(STUDY_FILE)):
        dest = out / marker.parent.relative_to(root)
        for f in sorted(p for p in marker.parent.iterdir() if p.is_file() and not p.name.startswith(".")):
            if not (dest / f.name).exists() and f.stat().st_size <= max_file_bytes:
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dest / f.name)
                copied.append(dest / f.name)
    return copied


def _archive_lowrank(run_path: Path, folder: Path) -> dict:
    """Write run_path's model into `folder` as a low-rank delta on its root registered model; the report."""

    base = root_model(run_path)
    model, _ = load_model(run_path)
    reference, _ = load_model(base)
    try:
        factors, report = lowrank_delta(model, reference)
    except ValueError as err:
        raise ValueError(f"{run_path}: cannot archive its weights as a low-rank delta: {err}") from None
    save_lowrank(factors, base, folder)
    return {"base": base, **report}


def root_model(run_path: str | Path) -> str:
    """The registered model at the bottom of a chain of training runs (run → spec.model → … → name)."""
    _, ref = base_chain(open_run(run_path))
    if ref in MODELS:
        return ref
    raise ValueError(f"{run_path}: its base {ref!r} is neither a registered model nor an existing run folder")
