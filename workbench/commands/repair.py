"""`workbench repair --defense safelora|antidote --model ATTACKED --out DIR`: a post-fine-tuning defense applied
to a fine-tuned model → one "repair" run folder in DIR (repaired model, what changed, its evaluation)."""
from __future__ import annotations

from pathlib import Path

import typer

from workbench.commands.common import DTypeOpt, JudgeOpt, guard, parse_params, print_metrics


def repair_cmd(defense: str = typer.Option(..., "--defense", help="Post-fine-tuning defense: safelora or antidote."),
               model: str = typer.Option(..., "--model", "-m", help="Fine-tuned model: attack/defend run folder, HF "
                                                                   "or LoRA adapter folder."),
               aligned: str | None = typer.Option(None, help="SafeLoRA: the aligned model it was fine-tuned from "
                                                                "(default: recorded in the attack run)."),
               unaligned: str | None = typer.Option(None, help="SafeLoRA: the model before safety alignment "
                                                                  "(default: recorded in the aligned run)."),
               param: list[str] = typer.Option([], "--param", "-p", help="Defense hyperparameter KEY=VALUE (JSON)."),
               out: Path = typer.Option(Path("runs"), "--out", "-o",
                                        help="Runs root; the repair run is written in it."),
               preset: str | None = typer.Option(None, help="'full' or 'tiny' eval sizes (default: the attacked "
                                                               "run's recorded evaluation)."),
               seed: int = typer.Option(0, "--seed", help="Seed for calibration samples and evaluation."),
               judge: str | None = JudgeOpt, dtype: str | None = DTypeOpt):
    """Repair a fine-tuned model (SafeLoRA projection or Antidote pruning) and evaluate it like `attack` does."""
    from workbench import steps  # deferred: torch

    def run():
        from workbench.defenses import DEFENSES  # deferred: torch
        from workbench.vocabulary import POST_FINE_TUNING  # deferred: startup

        post = sorted(n for n, d in DEFENSES.items() if d.stage == POST_FINE_TUNING)
        if defense not in post:
            stage = f" is a {DEFENSES[defense].stage}-stage defense;" if defense in DEFENSES else " is unknown;"
            raise ValueError(f"--defense {defense!r}{stage} repair takes a post-fine-tuning defense: {', '.join(post)}")
        eval_spec = None
        if preset is not None:
            from workbench.presets import preset as get_preset  # deferred: pydantic

            eval_spec = get_preset(preset, seed).eval
        return steps.repair(defense, parse_params(param), model, out, seed, eval_spec, aligned, unaligned,
                            judge=judge, dtype=dtype)

    path = guard(run)
    print_metrics(path)
