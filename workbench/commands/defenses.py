"""`workbench defenses [list --stage S]`: the defense registry (all three stages) as one table."""
from __future__ import annotations

import typer
from rich.table import Table

from workbench.commands.common import console, fail, guard


def defenses(ctx: typer.Context):
    """List every defense with its stage and hyperparameters (`workbench defenses` or `... defenses list`)."""
    if ctx.invoked_subcommand is None:
        defenses_list(stage=None)


def defenses_list(stage: str | None = typer.Option(
        None, help="Only this stage: alignment, fine-tuning or post-fine-tuning (also finetune, post).")):
    """List every defense with its stage and hyperparameters."""
    from workbench.defenses import DEFENSES  # deferred: torch
    from workbench.vocabulary import parse_stage  # deferred: startup

    stage = guard(parse_stage, stage) if stage is not None else None
    infos = [i for i in DEFENSES.values() if stage is None or i.stage == stage]
    if not infos:
        fail(f"no defenses of stage {stage!r}; stages: {sorted({i.stage for i in DEFENSES.values()})}")
    table = Table(title="defenses")
    for c in ("name", "stage", "hyperparameters (defaults)", "paper"):
        table.add_column(c)
    for info in infos:
        params = ", ".join(f"{k}={f.default}" for k, f in info.params.model_fields.items()) or "—"
        table.add_row(info.name, info.stage, params, info.paper)
    console.print(table)
