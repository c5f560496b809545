"""Sweeps: a grid of base model × attack × harmful ratio p × seed, one attack run per cell.

Each cell writes into its own runs root `<out>/cells/<cell key>/`, so a cell is done exactly when a
finished run exists there: re-running a sweep skips done cells, retries failed ones, and one failing
cell never stops the others (its error is recorded in `<out>/sweep-status.json`).
Backends: `local` (sequential, in process) or `ray` (a local Ray cluster, or `address` of an existing one);
both run the same deterministic cell function, so they give the same results.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from workbench.attacks import get_attack
from workbench.config import AttackSpec, EvalSpec
from workbench.machine import ray_cluster
from workbench.presets import default_preset, preset
from workbench.runs import list_runs, write_json


@dataclass(frozen=True)
class Cell:
    model: str  # model reference (name or folder)
    model_label: str  # short label used in keys, tables and figures
    attack: str
    p: float
    seed: int

    @property
    def key(self) -> str:
        return f"{self.model_label}-{self.attack}-p{self.p:g}-s{self.seed}"


def grid(models: dict[str, str], attacks: list[str], ps: list[float], seeds: list[int]) -> list[Cell]:
    """`models` maps label → reference. Every p is checked here, before any cell runs."""
    for p in ps:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"harmful ratio p must be in [0, 1], got {p}")
    return [Cell(ref, label, a, p, s)
            for (label, ref), a, p, s in itertools.product(models.items(), attacks, ps, seeds)]


def cell_root(out: Path, cell: Cell) -> Path:
    return Path(out) / "cells" / cell.key


def is_done(out: Path, cell: Cell) -> bool:
    return bool(list_runs(cell_root(out, cell)))


def run_cell(cell: Cell, out: str, attack_spec: dict, eval_spec: dict, progress: bool = False) -> str:
    """Run one cell (in this process or a Ray worker); returns the run folder path."""
    from workbench import steps  # deferred: torch (figures read sweep folders through this module)

    spec = AttackSpec(**attack_spec)
    spec = spec.model_copy(update={"name": cell.attack,
                                   "data": spec.data.model_copy(update={"p": cell.p, "seed": cell.seed}),
                                   "train": spec.train.model_copy(update={"seed": cell.seed})})
    ev = EvalSpec(**eval_spec).model_copy(update={"seed": cell.seed})
    return str(steps.attack(spec, cell.model, cell_root(Path(out), cell), cell.seed, ev, progress=progress))


def sweep(cells: list[Cell], out: str | Path, attack_spec: AttackSpec, eval_spec: EvalSpec,
          backend: str = "local", address: str | None = None, progress: bool = True) -> dict:
    """Run the cells not done yet; returns {"done": {key: path}, "skipped": [...], "failed": {key: error}}."""
    if backend not in ("local", "ray"):
        raise ValueError(f"unknown backend {backend!r}; use 'local' or 'ray'")
    with ray_cluster(address) if backend == "ray" else contextlib.nullcontext():
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        todo = [c for c in cells if not is_done(out, c)]
        status = {"skipped": [c.key for c in cells if c not in todo], "done": {}, "failed": {}}
        a, e = attack_spec.model_dump(), eval_spec.model_dump()
        if backend == "local":
            for cell in tqdm(todo, desc="sweep", disable=not progress, unit="cell"):
                try:
                    status["done"][cell.key] = run_cell(cell, str(out), a, e, progress=progress)
                except Exception as err:  # a failed cell is reported, never fatal to the sweep
                    status["failed"][cell.key] = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"
        else:
            status.update(_sweep_ray(todo, out, a, e))
        status["cells"] = [asdict(c) | {"key": c.key} for c in cells]
        write_json(out / "sweep-status.json", status)
    return status


def _sweep_ray(todo: list[Cell], out: Path, a: dict, e: dict) -> dict:
    import ray  # deferred: ray

    remote = ray.remote(num_cpus=1)(run_cell)
    refs = {c.key: remote.remote(c, str(out.resolve()), a, e) for c in todo}
    done, failed = {}, {}
    for key, ref in refs.items():
        try:
            done[key] = ray.get(ref)
        except Exception as err:  # RayTaskError wraps the cell's exception
            failed[key] = f"{type(err).__name__}: {err}"
    return {"done": done, "failed": failed}


def results(out: str | Path) -> list[dict]:
    """One row per finished cell, read from the run folders: cell fields + headline metrics."""
    out = Path(out)
    status_file = out / "sweep-status.json"

    if not status_file.exists():
        return []
    rows = []
    for c in json.loads(status_file.read_text())["cells"]:
        runs = list_runs(out / "cells" / c["key"])
        if not runs:
            continue
        m = runs[-1].metrics
        rates = {k: v for k, v in m.items() if isinstance(v, dict) and "value" in v}
        rows.append({**c, "run": str(runs[-1].path), **rates})
    return rows


def run_sweep(models: dict[str, str], attacks: list[str], ps: list[float], seeds: list[int], n: int | None,
              preset_name: str | None, backend: str, address: str | None, out: Path, progress: bool = True) -> dict:
    """The grid of `models` (label → reference) × attacks × ps × seeds at a preset's sizes (by the first model
    when none is named; `n` user samples per cell if given), run with `sweep`. Unknown attacks fail first."""

    for a in attacks:
        get_attack(a)  # unknown names fail before any cell runs
    first = next(iter(models.values()))
    pr = preset(preset_name or default_preset(first))
    spec = pr.attack if n is None else pr.attack.model_copy(update={"data": pr.attack.data.model_copy(update={"n": n})})
    return sweep(grid(models, attacks, ps, seeds), out, spec, pr.eval, backend=backend, address=address,
                 progress=progress)
