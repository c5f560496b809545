"""Run folders: the only thing steps write and the only thing the app and notebooks read.

A run is built in `<root>/.incomplete/<kind>-<name>-<spec hash>/` and renamed to
`<root>/<kind>-<name>-<timestamp>/` only when complete, so an interrupted step never leaves a half run
among the finished ones; its staging folder keeps the training checkpoint so `--resume` can continue.

Layout of a finished run:
    config.json     the run record (`workbench.record.RunRecord`): schema version, kind, name, seed, the spec
                    (typed by kind), git hash, package versions, created time; read it through `Run`
    metrics.json    flat-ish dict of numbers (each rate with n and a 95 % interval)
    samples.jsonl   one record per evaluated sample
    model/          safetensors + tokenizer, or a LoRA adapter + base reference
    result.json, tensors.safetensors    an analysis run's typed result
    figures/        *.html / *.png / *.svg
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

from workbench.config import AttackSpec, DefenseSpec
from workbench.machine import describe
from workbench.record import SCHEMA_VERSION, AlignRunSpec, RunRecord, RunSpec, parse_record, run_spec

INCOMPLETE = ".incomplete"
_PACKAGES = ("torch", "transformers", "peft", "transformer-lens", "scikit-learn", "sentence-transformers")


def git_hash() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def spec_hash(spec: dict) -> str:
    return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:10]


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # tensors and numpy values; a 0-d one becomes a plain number
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "model_dump"):
        return o.model_dump()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class RunWriter:
    """Context manager that stages a run and publishes it atomically on success.

    with RunWriter(root, "align", "sft", spec) as run:
        run.path / "model"        # write into the staging folder
        run.checkpoint_dir        # survives an interruption; removed on success
        run.write_metrics({...})
    run.final_path                # set after a clean exit
    """

    def __init__(self, root: str | Path, kind: str, name: str, spec: RunSpec | dict, seed: int = 0,
                 resume: bool = False, final: str | Path | None = None, stage_key: dict | None = None):
        """`spec`: the run spec of `kind` (`workbench.record`), or a dict validated into it (ValueError when it is
        not one). `final` publishes to that exact folder (which must not exist) instead of a timestamped name.
        `stage_key`: what names the staging folder instead of the whole spec, for a run whose spec may grow between
        resumptions (a study's grid) while the steps already staged stay valid."""
        self.fixed_final = Path(final) if final is not None else None
        if self.fixed_final is not None:
            if self.fixed_final.exists() and any(self.fixed_final.iterdir()):
                raise ValueError(f"{self.fixed_final} already exists and is not empty: runs are immutable, "
                                 f"choose a new --out folder")
            root = self.fixed_final.parent
        self.root = Path(root)
        self.kind, self.name, self.seed = kind, name, seed
        self.spec = run_spec(kind, spec)
        # the staging folder's name: the same spec and seed resume the same folder (dumped as it is written)
        key = self.spec.model_dump() if stage_key is None else stage_key
        self.stage_id = f"{kind}-{name}-{spec_hash({'spec': key, 'seed': seed})}"
        self.path = self.root / INCOMPLETE / self.stage_id
        self.resume = resume
        self.final_path: Path | None = None

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoint"

    def __enter__(self) -> RunWriter:
        if self.path.exists() and not self.resume:
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.record = RunRecord(schema_version=SCHEMA_VERSION, kind=self.kind, name=self.name, seed=self.seed,
                                spec=self.spec, git_hash=git_hash(), versions=package_versions(),
                                created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), machine=describe())
        write_json(self.path / "config.json", self.record.model_dump())
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            return False  # keep the staging folder (and its checkpoint) for --resume
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        final = self.fixed_final or self.root / f"{self.kind}-{self.name}-{stamp}"
        if self.fixed_final is not None and final.exists():
            final.rmdir()  # checked empty on entry
        i = 1
        while final.exists():
            final = self.root / f"{self.kind}-{self.name}-{stamp}-{i}"
            i += 1
        os.replace(self.path, final)
        self.final_path = final
        return False

    # --- writers -------------------------------------------------------------------------------
    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / "metrics.json", metrics)

    def write_samples(self, records: Iterable[dict]) -> None:
        self.write_samples_file("samples.jsonl", records)

    def write_samples_file(self, relpath: str, records: Iterable[dict]) -> None:
        lines = [json.dumps(r, ensure_ascii=False, default=json_default) for r in records]
        atomic_write_text(self.path / relpath, "\n".join(lines) + ("\n" if lines else ""))

    def write_json(self, relpath: str, obj: Any) -> Path:
        write_json(self.path / relpath, obj)
        return self.path / relpath

    def write_tensors(self, relpath: str, tensors: dict) -> Path:
        from safetensors.torch import save_file  # deferred: safetensors

        path = self.path / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, path)
        return path


@dataclass(frozen=True)
class Run:
    """A finished run folder, read-only. Its record (config.json) is read once, typed (`RunRecord`); the
    attributes below are what readers need from it, so none digs the JSON."""

    path: Path

    @property
    def config(self) -> dict:
        """config.json as the raw JSON (for display); read the typed attributes instead."""
        return json.loads((self.path / "config.json").read_text())

    @cached_property
    def record(self) -> RunRecord:
        """The parsed record; ValueError saying why when config.json is missing, damaged or not a run's."""
        return read_record(self.path)

    @property
    def kind(self) -> str:
        return self.record.kind

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def seed(self) -> int:
        return self.record.seed

    @property
    def created(self) -> str:
        return self.record.created

    @property
    def spec(self) -> RunSpec:
        """What the step ran, typed by kind (`workbench.record`)."""
        return self.record.spec

    @property
    def base(self) -> str | None:
        """The model the run was trained from / evaluated on (`spec.model`): a registered name or a folder."""
        return self.spec.model

    @property
    def defense_spec(self) -> DefenseSpec | None:
        """The defense of an align run (its alignment method), a defend run or a repair run; None otherwise."""
        if isinstance(self.spec, AlignRunSpec):
            return self.spec.align.defense if self.spec.align is not None else None
        return self.spec.defense if self.kind in ("defend", "repair") else None

    @property
    def defense(self) -> str | None:
        """The defense's name (see `defense_spec`)."""
        return self.defense_spec.name if self.defense_spec is not None else None

    @property
    def attack(self) -> AttackSpec | None:
        """The attack of an attack / defend run, or the one a repair run's target faced (copied when recorded)."""
        return self.spec.attack if self.kind in ("attack", "defend", "repair") else None

    @property
    def stage(self) -> str | None:
        """The defense stage: "alignment" (align), "fine-tuning" (defend), "post-fine-tuning" (repair); else None."""
        return self.record.stage

    @property
    def metrics(self) -> dict:
        p = self.path / "metrics.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def samples(self) -> list[dict]:
        p = self.path / "samples.jsonl"
        if not p.exists():
            return []
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]

    @property
    def model_dir(self) -> Path:
        return self.path / "model"


def model_ref(name_or_path: str) -> str:
    """How a base model is recorded: registered names as is, folders as absolute paths."""
    p = Path(name_or_path)
    return str(p.resolve()) if p.exists() else name_or_path


def base_chain(run: Run, max_depth: int = 8, search: Iterable[str | Path] = ()) -> tuple[list[Run], str | None]:
    """The runs a run was trained from, nearest first (attack → align → …), and the reference at the bottom of
    the chain: a registered model name, or a path that is not a run folder. Each run's base is `spec.model`.
    A base run no longer where its config says (its root was moved, or archived with `workbench runs archive`
    into a clean clone) is looked up by folder name under the `search` roots (`find_moved`)."""
    chain: list[Run] = []
    ref = run.base
    while ref:
        path = Path(ref) if run_kind(ref) is not None else find_moved(ref, search)
        if path is None:
            break
        if len(chain) >= max_depth:
            raise ValueError(f"{run.path}: the chain of base runs nests deeper than {max_depth} levels")
        chain.append(Run(path))
        ref = chain[-1].base
    return chain, ref


def find_moved(ref: str | Path, roots: Iterable[str | Path]) -> Path | None:
    """The finished run that an absolute run reference names, now under one of `roots`: run folder names are
    unique (kind-name-timestamp), so the same name is the same run. None for a registered model name."""
    if not Path(str(ref)).is_absolute():
        return None
    name = Path(str(ref)).name
    for root in roots:
        for cfg in sorted(Path(root).rglob(f"{name}/config.json")):
            if INCOMPLETE not in cfg.parts and run_kind(cfg.parent) is not None:
                return cfg.parent
    return None


def has_interrupted(root: str | Path) -> list[Path]:
    """Staging folders left by interrupted steps (resumable with --resume)."""
    p = Path(root) / INCOMPLETE
    return sorted(x for x in p.iterdir() if x.is_dir()) if p.exists() else []


def is_run_config(config: Any) -> bool:
    """A run's config.json (it has a kind and a spec), as opposed to, e.g., an HF model's config.json."""
    return isinstance(config, dict) and {"kind", "spec"} <= set(config)


def run_kind(folder: str | Path) -> str | None:
    """The kind of the run whose folder this is; None when `folder` holds no (readable) run config."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return config["kind"] if is_run_config(config) else None


def read_record(folder: str | Path) -> RunRecord:
    """The run record in `folder`/config.json; ValueError saying why when there is none or it is not valid."""
    p = Path(folder)
    if not (p / "config.json").is_file():
        raise ValueError(f"{p} is not a run folder: no config.json (finished runs live directly under the "
                         f"runs root; '{INCOMPLETE}/' holds interrupted ones)")
    try:
        config = json.loads((p / "config.json").read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{p}/config.json is not valid JSON ({err}): a damaged run folder") from None
    if not is_run_config(config):
        raise ValueError(f"{p} is not a run folder: its config.json is not a run config (a model folder?)")
    try:
        return parse_record(config)
    except ValueError as err:
        raise ValueError(f"{p}/config.json is not a valid run record ({err}): a damaged run folder") from None


def open_run(path: str | Path, kind: str | None = None) -> Run:
    """Open a finished run folder, checking it is one, that its record is valid (and of `kind` when given)."""
    run = Run(Path(path))
    record = run.record  # read and validated now: a damaged record is one clear error here, not in a reader later
    if kind is not None and record.kind != kind:
        raise ValueError(f"{run.path} is a '{record.kind}' run, expected a '{kind}' run")
    return run


def list_runs(root: str | Path = "runs", kind: str | None = None) -> list[Run]:
    """Finished runs under `root` (recursively, so sweep/quickstart sub-folders count), oldest first."""
    root = Path(root)
    if not root.exists():
        return []
    runs = []
    for cfg in sorted(root.rglob("config.json")):
        # staging folders below root are skipped, not root itself: a staged study lists the runs inside it
        if INCOMPLETE in cfg.relative_to(root).parts or cfg.parent.name in ("model", "checkpoint"):
            continue
        run = Run(cfg.parent)
        try:
            record = run.record
        except ValueError:  # not a run's config.json (e.g. a model folder's), or a damaged record: open_run says
            continue
        if kind is None or record.kind == kind:
            runs.append(run)
    return sorted(runs, key=lambda r: r.created)


# ----------------------------------------------------------------------------- what a run was made from


def defense_name(run: Run) -> str:
    """The defense of an align / defend / repair run, with the parameters given on its command line (so a
    variant such as `bea(n_safety=33)` reads apart from the defaults run); defaults are not repeated."""
    defense = run.defense_spec
    if defense is None or not defense.name:
        return run.name
    args = ", ".join(f"{k}={v}" for k, v in sorted(defense.params.items()))
    return f"{defense.name}({args})" if args else defense.name
