"""Which aligned models the basin study can use: every align run under the runs roots that an attack run started
from, with that attack's post-attack HS.

Pairing reads run records only (`list_runs`), as the leaderboard does: an attack run's `spec.model` names the align
run it fine-tuned. An archived root (`workbench runs archive`, results/) was moved, so that absolute path no longer
exists; the align run is then found by its folder name among the runs read (run folder names are unique:
kind-name-timestamp). The runs inside a stress study folder are its trials, not models of the board, and are left
out (as in the leaderboard).

Kept attack runs: kind "attack" (not "defend": a fine-tuning-stage defense would confound the alignment's effect)
of the chosen attack kind, harmful ratio p (None: any) and seed (None: any). Several kept attack runs of one aligned
model (seeds) give it their mean HS. All kept attack runs must have been evaluated on one harmful set (AdvBench or
the standard set), or their HS would not be comparable. HS is the run's own (metrics.json) or, with `judge`, that
judge's (`evaluation.rescore.judged_rates`: metrics.json when it scored the run, else its `scores/` sidecar).

Weights: an align run is scanned from its model/ (merged weights, or the low-rank delta an archived align run keeps);
one without is listed in `skipped`. An attack run archived without its weights still gives HS, but not the
aligned → attacked line (`line_from` is None).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from workbench.attacks import harmful_ratio
from workbench.evaluation.rescore import judged_rates
from workbench.models.registry import holds_model
from workbench.runs import Run, defense_name, list_runs, run_kind
from workbench.stress.study import STUDY_FILE


@dataclass(frozen=True)
class AttackedRun:
    run: str  # the attack run folder
    seed: int
    p: float | None
    hs: float  # post-attack HS, % (metrics.json, or the judge's)
    has_weights: bool


@dataclass(frozen=True)
class AlignedModel:
    """One aligned model of the study and the attack runs of it that were kept."""

    key: str  # the align run's folder name: unique, names its result file
    label: str  # what the tables and figures call it: the defense with its parameters (and seed, when not 0)
    run: str  # the align run folder
    defense: str
    attacked: tuple[AttackedRun, ...]

    @property
    def hs(self) -> float:
        """Post-attack HS (%), the mean over the kept attack runs."""
        return sum(a.hs for a in self.attacked) / len(self.attacked)

    @property
    def line_from(self) -> str | None:
        """The attack run whose weights end the aligned → attacked line (the first that has them)."""
        return next((a.run for a in self.attacked if a.has_weights), None)


@dataclass(frozen=True)
class Pairing:
    models: list[AlignedModel]
    roots: list[str]
    skipped: dict[str, str] = field(default_factory=dict)  # align run -> why it cannot be used
    judge: str | None = None  # the judge version HS was read under (None: each run's metrics.json)

    def summary(self) -> str:
        lines = [f"{len(self.models)} aligned model(s) with an attacked run under {', '.join(self.roots)}"
                 + (f" (HS by judge {self.judge})" if self.judge else "") + ":"]
        for m in self.models:
            line = "line" if m.line_from else "no attacked weights: no line"
            lines.append(f"  {m.label:<40} HS {m.hs:5.1f} %  from {len(m.attacked)} attack run(s), {line}  [{m.run}]")
        lines += [f"  skipped {run}: {why}" for run, why in self.skipped.items()]
        return "\n".join(lines)


def _study_runs(roots: list[Path]) -> list[Run]:
    studies = [cfg.parent.resolve() for r in roots for cfg in r.rglob(STUDY_FILE)]
    return [run for r in roots for run in list_runs(r)
            if not any(run.path.resolve().is_relative_to(s) for s in studies)]


def _base_of(run: Run, by_path: dict[Path, Run], by_name: dict[str, Run]) -> Run | None:
    """The run `run` was trained from, where it is now (see the module doc); None for a registered model."""
    ref = run.base
    if not ref or not Path(str(ref)).is_absolute():
        return None
    p = Path(str(ref))
    found = by_path.get(p.resolve()) or by_name.get(p.name)  # a run under the roots first, then the path itself
    return found if found is not None or run_kind(p) is None else Run(p)


def _label(run: Run, taken: set[str]) -> str:
    label = defense_name(run) + (f" seed {run.seed}" if run.seed else "")
    base, i = label, 2
    while label in taken:
        label, i = f"{base} #{i}", i + 1
    taken.add(label)
    return label


def find_pairs(roots: Iterable[str | Path], attack: str = "harmful_ft", p: float | None = 0.1,
               attack_seed: int | None = None, judge: str | None = None) -> Pairing:
    """Every aligned model under `roots` with a kept attack run of it (module doc). ValueError naming the roots and
    what was found when there is none."""
    roots = [Path(r) for r in roots]
    for r in roots:
        if not r.is_dir():
            raise ValueError(f"--runs {r}: no such folder (a runs root holding align and attack runs)")
    runs = _study_runs(roots)
    by_path = {r.path.resolve(): r for r in runs}
    by_name = {r.path.name: r for r in runs}
    aligns = [r for r in runs if r.kind == "align"]
    kept: dict[str, list[Run]] = {}
    bases: dict[str, Run] = {str(r.path): r for r in aligns}  # and align runs outside the roots that one names
    n_attacks = 0
    for r in runs:
        if r.kind != "attack" or r.attack is None:
            continue
        n_attacks += 1
        if r.attack.name != attack or (p is not None and harmful_ratio(r.attack) != p):
            continue
        if attack_seed is not None and r.seed != attack_seed:
            continue
        base = _base_of(r, by_path, by_name)
        if base is not None and base.kind == "align":
            kept.setdefault(str(base.path), []).append(r)
            bases.setdefault(str(base.path), base)
    where = ", ".join(map(str, roots))
    if not kept:
        raise ValueError(
            f"no aligned model with a {attack} attack run (p = {'any' if p is None else f'{p:g}'}, seed = "
            f"{'any' if attack_seed is None else attack_seed}) under {where}: found {len(aligns)} align run(s) and "
            f"{n_attacks} attack run(s) in all; the study pairs an align run with the attack runs whose base model is "
            f"it (`workbench align`, then `workbench attack --model <align run>`)")
    sets = {(a.spec.eval.harmful_set if a.spec.eval is not None else None) for rs in kept.values() for a in rs}
    if len(sets) > 1:
        raise ValueError(f"the kept attack runs under {where} were evaluated on different harmful sets "
                         f"({', '.join(sorted(map(str, sets)))}): their HS are not comparable; pass roots whose "
                         f"attack runs share one")
    scored: dict[str, dict] = {}
    ident = None
    if judge is not None:
        ident, scored = judged_rates([a.path for runs_ in kept.values() for a in runs_], judge, roots)
    models, skipped, taken = [], {}, set()
    for align in bases.values():
        attacks = kept.get(str(align.path))
        if not attacks:
            continue
        if not holds_model(align.model_dir):
            skipped[str(align.path)] = "no model weights in its folder (archived without its low-rank delta?)"
            continue
        attacked = []
        for a in sorted(attacks, key=lambda a: (a.seed, str(a.path))):
            rates = scored.get(str(a.path), a.metrics) if judge is not None else a.metrics
            hs = (rates.get("hs") or {}).get("value")
            if hs is None:
                skipped[str(a.path)] = "attack run without an HS (no harmful-set evaluation)"
                continue
            attacked.append(AttackedRun(str(a.path), a.seed, harmful_ratio(a.attack), float(hs),
                                        holds_model(a.model_dir)))
        if attacked:
            models.append(AlignedModel(align.path.name, _label(align, taken), str(align.path), defense_name(align),
                                       tuple(attacked)))
    if not models:
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise ValueError(f"no usable aligned model under {where}: {why}")
    return Pairing(models, [str(r) for r in roots], skipped, ident.version if ident else None)
