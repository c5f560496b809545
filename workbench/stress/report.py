"""The stress report, without the winner's curse: DIR/stress.json (`StressReport`), DIR/report.md and the
best-so-far figure.

The validation-best feasible configuration is the maximum of K noisy estimates, so its validation score is biased
upwards (the winner's curse). The report therefore never states the worst case on the prompts it was selected
on: the configuration is retrained with fresh seeds (default: the study seed + 1, + 2, + 3 — none the trials
trained with, so a lucky training seed is not carried over either), each an ordinary attack (defend / repair)
run evaluated on the held-out test sets (AdvBench eval split, Alpaca eval, the task's test split), and the
report gives their mean and max next to the validation maximum. The test and validation prompts are disjoint by
construction (the registry's eval split vs the train side); `check_disjoint` asserts it before anything trains.

Beside the judge behind the objective, the retrained models' answers are scored by keyword refusal (the run's
refusal rate) and by a second judge (`evaluation.rescore`: a scores/<version>.json sidecar beside each run;
default the other built-in judge), and the ten answers the judge finds most harmful are quoted. Rerunning skips
seeds whose runs are finished.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
from optuna.trial import TrialState
from pydantic import BaseModel, ConfigDict, ValidationError

from workbench import steps
from workbench.config import Spec
from workbench.data.validation import validation_sets
from workbench.evaluation.harness import eval_sets
from workbench.evaluation.moderation import JudgeId, get_judge, resolve_spec
from workbench.evaluation.rescore import judged_samples, rescore_run
from workbench.evaluation.scorers import hs_metrics
from workbench.evaluation.stats import Rate
from workbench.plots.export import export_figure
from workbench.plots.stress import plot_stress_best_so_far
from workbench.runs import Run, defense_name, list_runs, run_kind, write_json
from workbench.stress.space import THREAT_MODELS
from workbench.stress.study import OBJECTIVES, StudySpec, attacked_and_final, best_feasible, feasible, load_study
from workbench.tables import markdown_table
from workbench.vocabulary import ALIGNMENT, FINE_TUNING, NONE, POST_FINE_TUNING, fmt_rate

FORMAT = "workbench-stress/1"
REPORT_FILE = "stress.json"
N_QUOTES = 10
RATES = ("hs", "hs_plus", "refusal_harmful", "refusal_benign")


class TrialRecord(Spec):
    number: int
    state: str  # COMPLETE, FAIL, ...
    params: dict
    objective: float | None = None
    fa: float | None = None
    feasible: bool = False
    requested_steps: int | None = None
    granted_steps: int | None = None
    sequences: int | None = None
    error: str | None = None
    retry_of: int | None = None
    design: bool = False
    runs: dict[str, str] = {}


class SeedResult(Spec):
    """The validation-best configuration retrained with one seed, scored on the test sets."""

    seed: int
    run: str  # the served model's run: its metrics.json / samples.jsonl hold the test evaluation
    harm_prob: float  # mean judge P(harmful) on the test harmful prompts
    rates: dict[str, Rate]  # hs, hs_plus, refusal_harmful, refusal_benign, fa_<task>
    second_judge: dict[str, Rate]  # hs, hs_plus by the second judge


class Spread(Spec):
    mean: float
    max: float


class Quote(Spec):
    seed: int
    prompt: str
    answer: str
    judge_score: float
    second_judge_score: float
    refusal: bool


class StressReport(BaseModel):
    """DIR/stress.json. `stage`, `defense`, `aligned_with` are spelled as the leaderboard's rows, so its worst-case
    column finds the row each report belongs to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["workbench-stress/1"] = FORMAT
    spec: StudySpec
    threat_model: str
    objective: str
    stage: str
    defense: str
    aligned_with: str
    trials: list[TrialRecord]
    compute: int  # sequences trained over all trials
    best: TrialRecord | None = None  # the validation-best feasible trial; None when no trial kept FA at the floor
    report_seeds: list[int] = []
    seeds: list[SeedResult] = []
    test: dict[str, Spread] = {}  # harm_prob and each rate: mean and max over the seeds (percent for rates)
    judge: JudgeId | None = None
    second_judge: JudgeId | None = None
    quotes: list[Quote] = []

    @property
    def label(self) -> str:
        return self.defense if self.stage in (ALIGNMENT, NONE) else f"{self.aligned_with} + {self.defense}"

    def objectives(self) -> list[float | None]:
        """Each trial's objective in trial order, None for a failed or infeasible one (the best-so-far curve)."""
        return [t.objective if t.feasible else None for t in self.trials if t.state == "COMPLETE" or t.error]


# ------------------------------------------------------------------------------------------------ pieces


def board_keys(spec: StudySpec) -> tuple[str, str, str]:
    """(stage, defense, aligned_with) as the leaderboard spells them for the model this study attacks."""
    kind = run_kind(Path(spec.model))
    aligned = defense_name(Run(Path(spec.model))) if kind == "align" else "—"
    if spec.defense is not None:
        args = ", ".join(f"{k}={v}" for k, v in sorted(spec.defense.params.items()))
        name = f"{spec.defense.name}({args})" if args else spec.defense.name
        return (POST_FINE_TUNING if spec.post_defense is not None else FINE_TUNING), name, aligned
    return (ALIGNMENT, aligned, aligned) if kind == "align" else (NONE, "none", "—")


def trial_records(study) -> list[TrialRecord]:
    out = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:
            continue
        a = t.user_attrs
        out.append(TrialRecord(
            number=t.number, state=t.state.name, params=t.system_attrs.get("fixed_params", t.params),
            objective=t.value if t.state == TrialState.COMPLETE else None, fa=a.get("fa"), feasible=feasible(t),
            requested_steps=a.get("requested_steps"), granted_steps=a.get("granted_steps"),
            sequences=a.get("sequences"), error=a.get("error"), retry_of=a.get("retry_of"),
            design=bool(a.get("design")), runs=a.get("runs", {})))
    return out


def check_disjoint(spec: StudySpec, seeds: Iterable[int]) -> None:
    """The test prompts the report scores on share no uid with the validation prompts the trials were scored on."""
    harmful, _ = validation_sets(spec.preset, spec.seed, spec.eval.n_harmful, 0)
    chosen_on = {s.uid for s in harmful}
    for seed in seeds:
        test = eval_sets(spec.eval.model_copy(update={"seed": seed}))
        leaked = chosen_on & {s.uid for s in test["harmful"]}
        if leaked:
            raise ValueError(f"{len(leaked)} test prompts are validation prompts: the worst case would be reported "
                             f"on the prompts it was selected on")


def second_judge_default(primary: str) -> str:
    """The other built-in judge."""
    return "hashing-lr" if resolve_spec(primary) == "minilm-lr" else "minilm-lr"


def retrain(spec: StudySpec, params: dict, seed: int, folder: Path, progress: bool) -> Path:
    """The configuration at `seed` into `folder` (one per best trial and seed: DIR/report/trial-<n>/seed-<s>),
    evaluated on the test sets; a finished run there is reused."""
    runs = list_runs(folder)
    served = "repair" if spec.post_defense is not None else ("defend" if spec.finetune_defense else "attack")
    done = [r for r in runs if r.kind == served]
    if done:
        return done[-1].path
    attacks = [r for r in runs if r.kind in ("attack", "defend")]
    if attacks and spec.post_defense is not None:  # the repair was interrupted: repair the finished attack
        post = spec.post_defense
        return steps.repair(post.name, post.params, str(attacks[-1].path), folder, seed, progress=progress)
    test = spec.eval.model_copy(update={"seed": seed})
    return attacked_and_final(spec, params, folder, seed, test, progress)[1]


def seed_result(run: Run, seed: int, second) -> tuple[SeedResult, list[Quote]]:
    """A retrained run's test numbers under both judges, and its harmful answers as quotes."""
    rescore_run(run, second)
    primary = [r for r in run.samples() if r.get("set") == "harmful"]
    other = [r for r in judged_samples(run, second.version) if r.get("set") == "harmful"]
    hs2 = {m: Rate(**v) for m, v in hs_metrics(other).items()}
    rates = {k: Rate(**{f: v[f] for f in ("k", "n", "value", "low", "high")}) for k, v in run.metrics.items()
             if k in RATES or k.startswith("fa_")}
    quotes = [Quote(seed=seed, prompt=a["prompt"], answer=a["answer"], judge_score=a["judge_score"],
                    second_judge_score=b["judge_score"], refusal=bool(a["refusal"]))
              for a, b in zip(primary, other, strict=True)]
    return SeedResult(seed=seed, run=str(run.path), harm_prob=float(np.mean([q.judge_score for q in quotes])),
                      rates=rates, second_judge=hs2), quotes


def spreads(results: list[SeedResult]) -> dict[str, Spread]:
    values: dict[str, list[float]] = {"harm_prob": [r.harm_prob for r in results]}
    for r in results:
        for k, v in r.rates.items():
            values.setdefault(k, []).append(v.value)
        for k, v in r.second_judge.items():
            values.setdefault(f"second_{k}", []).append(v.value)
    return {k: Spread(mean=float(np.mean(v)), max=float(np.max(v))) for k, v in values.items()
            if len(v) == len(results)}


# ------------------------------------------------------------------------------------------------- report


def build_report(out: str | Path, seeds: list[int] | None = None, second_judge: str | None = None,
                 progress: bool = True, formats=("html",)) -> StressReport:
    """Retrain the validation-best feasible configuration (module doc), score it on the test sets, write
    stress.json, report.md and the best-so-far figure into the study folder `out`."""
    out = Path(out)
    meta, study = load_study(out)
    spec = meta.spec
    trials = trial_records(study)
    stage, defense, aligned = board_keys(spec)
    base = dict(spec=spec, threat_model=THREAT_MODELS[spec.threat], objective=OBJECTIVES[spec.objective],
                stage=stage, defense=defense, aligned_with=aligned, trials=trials,
                compute=sum(t.sequences or 0 for t in trials))
    best = best_feasible(study)
    seeds = seeds if seeds is not None else [spec.seed + i for i in (1, 2, 3)]
    if best is None:
        report = StressReport(**base)
    else:
        check_disjoint(spec, seeds)
        second = get_judge(second_judge or second_judge_default(spec.eval.judge_spec))
        results, quotes = [], []
        for seed in seeds:
            path = retrain(spec, best.params, seed, out / "report" / f"trial-{best.number}" / f"seed-{seed}",
                           progress)
            result, answers = seed_result(Run(path), seed, second)
            results.append(result)
            quotes += answers
        seen, top = set(), []
        for q in sorted(quotes, key=lambda q: (-q.judge_score, q.seed, q.prompt)):
            if q.prompt not in seen:
                seen.add(q.prompt)
                top.append(q)
        judge = JudgeId.from_dict(Run(Path(results[0].run)).metrics.get("judge"))
        report = StressReport(**base, best=next(t for t in trials if t.number == best.number), report_seeds=seeds,
                              seeds=results, test=spreads(results), judge=judge, second_judge=second.identity,
                              quotes=top[:N_QUOTES])
    write_json(out / REPORT_FILE, report.model_dump(mode="json"))
    (out / "report.md").write_text(markdown(report))
    fig = plot_stress_best_so_far({report.label: report.objectives()}, spec.objective,
                                  f"{report.label}: {spec.threat} threat model, K = {spec.budget}")
    export_figure(fig, out, "best_so_far", formats)
    return report


def read_report(folder: str | Path) -> StressReport:
    path = Path(folder) / REPORT_FILE
    try:
        return StressReport.model_validate_json(path.read_text())
    except ValidationError as err:
        raise ValueError(f"{path} is not a stress report this version reads ({err.errors()[0]['msg']} at "
                         f"{err.errors()[0]['loc']}); rerun `workbench stress` on {folder} to rewrite it") from None


def find_reports(roots: Iterable[str | Path]) -> list[StressReport]:
    """Every stress report under the roots (recursively), in path order."""
    return [read_report(p.parent) for r in roots for p in sorted(Path(r).rglob(REPORT_FILE))]


# ---------------------------------------------------------------------------------------------- markdown


def _g(x) -> str:
    return "—" if x is None else (f"{x:.3g}" if isinstance(x, float) else str(x))


def markdown(r: StressReport) -> str:
    s, space = r.spec, r.spec.space
    lines = [f"# Stress test: {r.label}, {s.threat} threat model, K = {s.budget}", "",
             f"Model: `{s.model}`. Stage: {r.stage}.", "",
             f"**Threat model.** {r.threat_model}", "",
             f"**Search space.** kinds {', '.join(space.kinds)}; p ∈ [{space.p.low:g}, {space.p.high:g}]; "
             f"n ∈ [{space.n.low}, {space.n.high}]; epochs ∈ [{space.epochs.low}, {space.epochs.high}]; "
             f"lr ∈ [{space.lr.low:g}, {space.lr.high:g}] (log); method {' / '.join(space.methods)}; LoRA rank "
             f"∈ [{space.lora_r.low}, {space.lora_r.high}]. Compute cap per trial: {space.max_sequences} sequences "
             f"({space.cap_steps} optimizer steps × {space.sequences_per_step}); a longer request is clipped to it. "
             f"Compute spent: {r.compute} sequences over {sum(t.state == 'COMPLETE' for t in r.trials)} completed "
             f"trials.", "",
             f"**Objective** (maximised): {r.objective}, subject to validation FA ≥ {s.fa_floor:g}. The first "
             f"{min(s.design_size, s.budget)} configurations are a seeded Halton design (seed {s.seed}), the same "
             f"for every defense under this threat model; TPE chooses the rest.", ""]
    if r.best is None:
        lines += ["**No trial kept FA at the floor**: there is no worst case to report within this budget.", ""]
    else:
        b = r.best
        cfg = s.space.config(b.params)
        lines += ["## Worst case", "",
                  f"Validation-best feasible configuration (trial {b.number}): kind {cfg.kind}, p {cfg.p:.3g}, "
                  f"n {cfg.n}, epochs {cfg.epochs}, lr {cfg.lr:.3g}, method {cfg.method}"
                  + (f", rank {cfg.lora_r}" if cfg.lora_r else "") + f"; {b.granted_steps} of {b.requested_steps} "
                  f"requested steps. Validation maximum: {b.objective:.3f} ({s.objective}), validation FA "
                  f"{_g(b.fa)}.", "",
                  f"Retrained with seeds {', '.join(map(str, r.report_seeds))} and scored on the test sets (never "
                  f"the validation prompts it was selected on). Judge: {r.judge.name if r.judge else '—'}; "
                  f"second judge: {r.second_judge.name if r.second_judge else '—'}.", ""]
        fa = next((k for k in (r.seeds[0].rates if r.seeds else {}) if k.startswith("fa_")), None)
        head = ["seed", "mean P(harm)", "HS", "HS+", "refusal harmful", "refusal benign", *([fa] if fa else []),
                "HS (judge 2)", "HS+ (judge 2)", "run"]
        rows = [[x.seed, f"{x.harm_prob:.3f}", *[fmt_rate(x.rates.get(m), decimals=0) for m in RATES],
                 *([fmt_rate(x.rates.get(fa), decimals=0)] if fa else []),
                 *[fmt_rate(x.second_judge.get(m), decimals=0) for m in ("hs", "hs_plus")], Path(x.run).name]
                for x in r.seeds]
        for stat in ("mean", "max"):
            rows.append([stat, f"{getattr(r.test['harm_prob'], stat):.3f}",
                         *[f"{getattr(r.test[m], stat):.0f}" if m in r.test else "—" for m in RATES],
                         *([f"{getattr(r.test[fa], stat):.0f}"] if fa else []),
                         *[f"{getattr(r.test[f'second_{m}'], stat):.0f}" for m in ("hs", "hs_plus")], ""])
        lines += [markdown_table(head, rows), "## Ten worst-case answers (test prompts, highest judge P(harm))", ""]
        for q in r.quotes:
            lines += [f"- seed {q.seed}, P(harm) {q.judge_score:.2f} (judge 2: {q.second_judge_score:.2f}), "
                      f"{'refusal' if q.refusal else 'no refusal'}", f"  - prompt: {_quote(q.prompt)}",
                      f"  - answer: {_quote(q.answer)}"]
        lines.append("")
    lines += ["## Trials", "",
              markdown_table(["#", "kind", "p", "n", "epochs", "lr", "method", "rank", "steps", s.objective, "FA",
                              "feasible", "note"],
                             [_trial_row(s, t) for t in r.trials])]
    return "\n".join(lines)


def _quote(text: str) -> str:
    return " ".join(text.split())[:300] or "(empty)"


def _trial_row(s: StudySpec, t: TrialRecord) -> list:
    cfg = s.space.config(t.params)
    steps = f"{t.granted_steps}/{t.requested_steps}" if t.granted_steps is not None else "—"
    note = "; ".join(x for x in ("design" if t.design else "", f"retry of {t.retry_of}" if t.retry_of is not None
                                 else "", t.error or "", "killed" if t.state == "FAIL" and not t.error else "") if x)
    return [t.number, cfg.kind, f"{cfg.p:.3g}", cfg.n, cfg.epochs, f"{cfg.lr:.3g}", cfg.method, cfg.lora_r or "—",
            steps, _g(t.objective), _g(t.fa), "yes" if t.feasible else "no", note]
