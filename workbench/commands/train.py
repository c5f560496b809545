"""`workbench align` | `workbench attack` | `workbench quickstart`: the training steps, one run folder each.

align       safety-align a model (SFT on refusals, or an alignment-stage defense) → `steps.align`
attack      fine-tune on user data with harmful ratio p, optionally under a fine-tuning-stage defense
            → `steps.attack`
quickstart  non-aligned → safety SFT → harmful fine-tuning (p = 0.1) → SafeLoRA repair, all evaluated, and the
            refusal direction → `pipeline.quickstart`, printed as one table
"""
from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from workbench.commands.common import (
    DTypeOpt,
    JudgeOpt,
    ModelOpt,
    OutOpt,
    SeedOpt,
    console,
    fmt_rate,
    guard,
    parse_params,
    print_metrics,
    with_dtype,
    with_judge,
)


def align_cmd(model: str = ModelOpt, seed: int = SeedOpt, out: Path = OutOpt,
              defense: str = typer.Option("sft", help="Alignment-stage defense (see `workbench defenses`)."),
              param: list[str] = typer.Option([], "--param", "-p",
                                              help="Defense hyperparameter KEY=VALUE (JSON value)."),
              preset: str | None = typer.Option(None, help="'full' or 'tiny' sizes (default: by model)."),
              method: str | None = typer.Option(None, help="'lora' or 'full' fine-tuning."),
              max_steps: int | None = typer.Option(None, help="Stop after this many optimizer steps."),
              resume: bool = typer.Option(False, help="Continue an interrupted run of the same spec."),
              judge: str | None = JudgeOpt, dtype: str | None = DTypeOpt):
    """Safety-align a model (SFT on refusals, or an alignment-stage defense)."""
    from workbench import steps  # deferred: torch
    from workbench.config import DefenseSpec  # deferred: pydantic
    from workbench.presets import default_preset  # deferred: pydantic
    from workbench.presets import preset as get_preset

    def run():
        p = get_preset(preset or default_preset(model), seed)
        train = p.align.train.model_copy(update={k: v for k, v in dict(method=method, max_steps=max_steps).items()
                                                 if v is not None})
        spec = p.align.model_copy(update={"defense": DefenseSpec(name=defense, params=parse_params(param)),
                                          "train": with_dtype(train, dtype)})
        return steps.align(spec, model, out, seed, with_dtype(with_judge(p.eval, judge), dtype), resume=resume)

    path = guard(run)
    print_metrics(path)


def attack_cmd(model: str = ModelOpt, seed: int = SeedOpt, out: Path = OutOpt,
               name: str = typer.Option("harmful_ft", "--attack",
                                        help="Attack (harmful_ft, pure_bad, benign_ft, identity_shift, dpo, ...)."),
               p: float | None = typer.Option(None, "--p", help="Harmful ratio in [0, 1]."),
               n: int | None = typer.Option(None, "--n", help="Number of user samples."),
               benign: str | None = typer.Option(None, help="Benign task dataset (default sst2)."),
               preset: str | None = typer.Option(None, help="'full' or 'tiny' sizes (default: by model)."),
               method: str | None = typer.Option(None, help="'lora' or 'full' fine-tuning."),
               max_steps: int | None = typer.Option(None, help="Stop after this many optimizer steps."),
               defense: str | None = typer.Option(None, help="Fine-tuning-stage defense the provider applies."),
               param: list[str] = typer.Option([], "--param", help="Defense hyperparameter KEY=VALUE (JSON value)."),
               attack_param: list[str] = typer.Option([], "--attack-param",
                                                       help="Attack hyperparameter KEY=VALUE (JSON value)."),
               resume: bool = typer.Option(False, help="Continue an interrupted run of the same spec."),
               judge: str | None = JudgeOpt, dtype: str | None = DTypeOpt):
    """Fine-tune a model on user data with harmful ratio p (the attack), optionally under a defense."""
    from workbench import steps  # deferred: torch
    from workbench.config import DefenseSpec  # deferred: pydantic
    from workbench.presets import default_preset  # deferred: pydantic
    from workbench.presets import preset as get_preset

    def run():
        if p is not None and not 0.0 <= p <= 1.0:
            raise ValueError(f"--p must be in [0, 1], got {p}")
        pr = get_preset(preset or default_preset(model), seed)
        data = pr.attack.data.model_copy(update={k: v for k, v in dict(p=p, n=n, benign=benign, seed=seed).items()
                                                 if v is not None})
        train = pr.attack.train.model_copy(update={k: v for k, v in dict(method=method, max_steps=max_steps).items()
                                                   if v is not None})
        spec = pr.attack.model_copy(update={"name": name, "data": data, "train": with_dtype(train, dtype),
                                            "params": parse_params(attack_param)})
        d = DefenseSpec(name=defense, params=parse_params(param)) if defense else None
        return steps.attack(spec, model, out, seed, with_dtype(with_judge(pr.eval, judge), dtype), resume=resume,
                            defense=d)

    path = guard(run)
    print_metrics(path)


def quickstart_cmd(model: str = ModelOpt, seed: int = SeedOpt, out: Path = OutOpt,
                   preset: str | None = typer.Option(None, help="'full' or 'tiny' sizes (default: by model)."),
                   resume: bool = typer.Option(False,
                                               help="Continue interrupted training steps from their checkpoints."),
                   reported_sets: bool = typer.Option(
                       False, help="Evaluate on the reported test sets (the standard harmful set, HS per source) "
                                   "instead of the quickstart's fixed 100 AdvBench prompts."),
                   aligned: str | None = typer.Option(
                       None, help="An align run of MODEL to start from (e.g. chosen on the validation split by "
                                  "scripts/choose_alignment.py) instead of aligning again."),
                   dtype: str | None = DTypeOpt):
    """Non-aligned → safety SFT → harmful fine-tuning (p = 0.1) → SafeLoRA repair, all evaluated; then the refusal
    direction of aligned vs attacked. Prints one table; `workbench app` opens the runs root."""
    from workbench.pipeline import quickstart as qs  # deferred: torch
    from workbench.pipeline import results_table

    paths = guard(qs, model, out, seed, preset, resume=resume, reported_sets=reported_sets, dtype=dtype,
                  aligned=aligned)
    rows = results_table(paths)
    table = Table(title=f"quickstart: {model} (seed {seed}, {paths['_seconds'] / 60:.1f} min)")
    cols = [c for c in rows[0] if c not in ("model", "run")]
    table.add_column("model")
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(r["model"], *[fmt_rate(r.get(c)) for c in cols])
    console.print(table)
    for r in rows:
        console.print(f"  {r['model']:>12}: {r['run']}")
    console.print(f"  {'analysis':>12}: {paths['refusal-direction']}")
