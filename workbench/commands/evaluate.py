"""`workbench eval`: evaluate any model or run folder on held-out sets (or the validation split) → one run folder."""
from __future__ import annotations

from pathlib import Path

import typer

from workbench.commands.common import (
    DTypeOpt,
    JudgeOpt,
    ModelOpt,
    OutOpt,
    SeedOpt,
    eval_spec,
    guard,
    print_metrics,
    with_dtype,
    with_judge,
)
from workbench.data.jsonl import read_prompts


def eval_cmd(model: str = ModelOpt, seed: int = SeedOpt, out: Path = OutOpt,
             preset: str | None = typer.Option(None, help="'full' or 'tiny' sizes (default: by model)."),
             n_harmful: int | None = typer.Option(None, help="Held-out harmful prompts."),
             harmful_set: str | None = typer.Option(
                 None, help="'advbench' (held-out AdvBench) or 'standard' (AdvBench + HarmBench + Do-Not-Answer "
                            "without near-duplicates of training prompts; HS per source); default: the preset's."),
             n_benign: int | None = typer.Option(None, help="Held-out benign prompts."),
             task: str | None = typer.Option(None, help="Benign task for FA (sst2, gsm_symbolic, gsm8k)."),
             n_task: int | None = typer.Option(None, help="Task test samples."),
             harmful_prompts: Path | None = typer.Option(None, help="Your own harmful prompts: one a line, or JSONL."),
             validation: bool = typer.Option(
                 False, help="Harmful and benign prompts from the validation split (train-side prompts outside the "
                             "preset's alignment mix for --seed; no FA): for choosing hyperparameters, never the "
                             "reported test sets."),
             system_prompt: str | None = typer.Option(
                 None, help="System prompt for the harmful and benign prompts (e.g. a safety prompt, as PTST uses); "
                            "default: the chat template's own."),
             judge: str | None = JudgeOpt, dtype: str | None = DTypeOpt):
    """Evaluate any model or run folder on held-out sets."""
    from workbench import steps  # deferred: torch

    def run():
        if validation and harmful_prompts:
            raise ValueError("--validation and --harmful-prompts both choose the harmful prompts; give one")
        harmful = read_prompts(harmful_prompts) if harmful_prompts else None
        spec = eval_spec(preset, model, seed, n_harmful if n_harmful is not None else
                         (len(harmful) if harmful else None), n_benign, n_task, task, harmful_set,
                         validation=validation)
        spec = with_dtype(with_judge(spec, judge), dtype)
        if system_prompt is not None:
            spec = spec.model_copy(update={"generation": spec.generation.model_copy(
                update={"system_prompt": system_prompt})})
        if validation:
            from workbench.presets import default_preset  # deferred: pydantic

            return steps.evaluate_validation(model, out, preset or default_preset(model), seed, spec)
        return steps.evaluate_model(model, out, seed, spec, harmful=harmful)

    path = guard(run)
    print_metrics(path)
