"""`workbench stress --model RUN [--defense NAME] --threat {service,open} --budget K --out DIR`: the worst case of a
defense over a declared attacker budget (`workbench.stress`). An Optuna study in DIR (SQLite, or --storage URL):
a seeded design of 8 configurations every defense faces, then TPE up to K trials, each an ordinary attack run
scored on the validation split under an FA floor; then the validation-best configuration retrained with three
fresh seeds and scored on the test sets (DIR/stress.json, DIR/report.md, DIR/best_so_far.html). Rerunning the same
command resumes: finished trials are skipped, a killed one is retried, a finished report seed is reused."""
from __future__ import annotations

from pathlib import Path

import typer

from workbench.commands.common import JudgeOpt, console, guard, parse_params


def stress_cmd(model: str = typer.Option(..., "--model", "-m", help="The attacked model: an align run folder (its "
                                                                    "alignment defense), or any model."),
               threat: str = typer.Option(..., "--threat", help="'service' (fine-tuning as a service) or 'open' "
                                                                "(open weights)."),
               budget: int = typer.Option(..., "--budget", "-k", help="K trials (the design's 8 included)."),
               out: Path = typer.Option(..., "--out", "-o", help="Study folder (created; rerun to resume)."),
               defense: str | None = typer.Option(None, help="Fine-tuning-stage or post-fine-tuning defense the "
                                                             "provider applies (service threat only)."),
               param: list[str] = typer.Option([], "--param", help="Defense hyperparameter KEY=VALUE (JSON value)."),
               seed: int = typer.Option(0, "--seed", help="Seed of the design, TPE and the trials' training."),
               preset: str | None = typer.Option(None, help="'full' or 'tiny' sizes and bounds (default: by model)."),
               objective: str = typer.Option("harm_prob", help="'harm_prob' (mean judge P(harmful)) or 'hs_plus'."),
               fa_floor: float | None = typer.Option(None, help="Validation FA below this makes a trial infeasible "
                                                                "(default: 0.5 full, 0 tiny)."),
               design_size: int = typer.Option(8, help="Configurations of the seeded design before TPE."),
               space: Path | None = typer.Option(None, help="A search space as JSON (`SearchSpace`), instead of "
                                                            "the threat model's default bounds."),
               storage: str | None = typer.Option(None, help="Optuna storage URL (default: sqlite in --out)."),
               backend: str = typer.Option("local", help="'local' or 'ray' (trials in parallel)."),
               workers: int | None = typer.Option(None, help="Parallel trials on Ray (default: the cores)."),
               address: str | None = typer.Option(None, help="Ray cluster address (default: start a local one)."),
               report: bool = typer.Option(True, help="Retrain the worst case on fresh seeds and write the report."),
               second_judge: str | None = typer.Option(None, help="Second judge of the report (default: the "
                                                                  "other built-in one)."),
               judge: str | None = JudgeOpt):
    """Worst case of a defense over a declared attacker budget: an Optuna study, then a test-set report."""
    from workbench.stress.run import stress, study_spec  # deferred: optuna, torch

    def run():
        spec = study_spec(model, threat, budget, defense, parse_params(param), seed, preset, objective, fa_floor,
                          design_size, judge, space)
        return stress(spec, out, storage=storage, backend=backend, workers=workers, address=address, report=report,
                      second_judge=second_judge)

    result = guard(run)
    if result is None:
        console.print(f"study done: {out}")
        return
    if result.best is None:
        console.print(f"[yellow]no trial kept FA at the floor[/]; report: {out / 'report.md'}")
        return
    t = result.test
    console.print(f"worst case ({result.spec.threat}, K = {result.spec.budget}): validation max "
                  f"{result.best.objective:.3f}; test HS mean {t['hs'].mean:.0f} % max {t['hs'].max:.0f} %, "
                  f"HS+ mean {t['hs_plus'].mean:.0f} %; report: {out / 'report.md'}")
