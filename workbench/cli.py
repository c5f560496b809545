"""`workbench` command line: align | attack | repair | eval | quickstart | runs | defenses | leaderboard | stress | ....

This module only builds the Typer apps and registers the commands; each command's body lives in
`workbench.commands.<topic>` and what they share (console, input-error boundary, options) in
`workbench.commands.common`.

Input errors are caught at the boundary, and printed as one line (exit 2) with what to fix.
SIGTERM is turned into KeyboardInterrupt so a killed step checkpoints and leaves no finished-looking run.
"""
from __future__ import annotations

import os
import sys

import typer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from workbench.commands import (  # noqa: E402
    analyze,
    attacks,
    defenses,
    evaluate,
    figures,
    judge,
    leaderboard,
    repair,
    runs,
    stress,
    study_ascent,
    study_basins,
    study_safety_params,
    sweep,
    train,
)

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Align, attack, defend, evaluate and explain small LLMs under harmful fine-tuning.")

runs_app = typer.Typer(no_args_is_help=True, help="List and inspect run folders.")
app.add_typer(runs_app, name="runs")
runs_app.command("list")(runs.runs_list)
runs_app.command("show")(runs.runs_show)
runs_app.command("archive")(runs.runs_archive)

app.command("align")(train.align_cmd)
app.command("attack")(train.attack_cmd)
app.command("attacks")(attacks.attacks_list)
app.command("eval")(evaluate.eval_cmd)
app.command("quickstart")(train.quickstart_cmd)

defenses_app = typer.Typer(help="The defense registry (all three stages).")
app.add_typer(defenses_app, name="defenses")
defenses_app.callback(invoke_without_command=True)(defenses.defenses)
defenses_app.command("list")(defenses.defenses_list)

app.command("analyze")(analyze.analyze)
app.command("sweep")(sweep.sweep_cmd)
app.command("figure2")(sweep.figure2_cmd)
app.command("figures")(figures.figures_cmd)
app.command("repair")(repair.repair_cmd)
app.command("leaderboard")(leaderboard.leaderboard_cmd)
app.command("stress")(stress.stress_cmd)

judge_app = typer.Typer(no_args_is_help=True, help="Moderation judge: score responses, report its FN/FP.")
app.add_typer(judge_app, name="judge")
judge_app.command("score")(judge.score_cmd)
judge_app.command("rescore")(judge.rescore_cmd)
judge_app.command("report")(judge.report_cmd)
judge_app.command("train")(judge.train_cmd)

study_app = typer.Typer(no_args_is_help=True, help="Studies of the survey's open questions (docs/open-questions.md); "
                                                   "each writes run folders.")
app.add_typer(study_app, name="study")
study_app.command("basins")(study_basins.basins_cmd)
study_app.command("safety-params")(study_safety_params.safety_params_cmd)
study_app.command("ascent")(study_ascent.ascent_cmd)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
