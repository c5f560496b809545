"""`workbench runs list | show | archive`: list and inspect run folders, archive their records (`workbench.runs`)."""
from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from workbench.commands.common import OutOpt, console, fmt_rate, guard


def runs_list(out: Path = OutOpt, kind: str | None = typer.Option(None, help="Only runs of this kind.")):
    """Finished runs, oldest first, with their headline metrics."""
    from workbench.runs import has_interrupted, list_runs  # deferred: startup
    from workbench.vocabulary import short_title  # deferred: startup

    table = Table(title=f"runs in {out}")
    for c in ("run", "kind", short_title("refusal_harmful"), short_title("refusal_benign"), "FA"):
        table.add_column(c)
    for r in list_runs(out, kind):
        m = r.metrics
        fa = next((v for k, v in m.items() if k.startswith("fa_")), None)
        table.add_row(str(r.path.relative_to(out)), r.kind, fmt_rate(m.get("refusal_harmful")),
                      fmt_rate(m.get("refusal_benign")), fmt_rate(fa))
    console.print(table)
    for p in has_interrupted(out):
        console.print(f"[yellow]interrupted (resume with --resume):[/] {p}")


def runs_show(path: Path = typer.Argument(..., help="A run folder.")):
    """Config and metrics of one run."""
    from workbench.runs import open_run  # deferred: startup

    run = guard(open_run, path)
    console.print_json(json.dumps({"config": run.config, "metrics": run.metrics}))


def runs_archive(runs: Path = typer.Option(..., "--runs", help="Runs root to archive (e.g. runs/defense-grid)."),
                 out: Path = typer.Option(..., "--out", help="Where the records go, same layout (e.g. results/...)."),
                 max_file_mb: float = typer.Option(1.0, help="Leave out any file larger than this."),
                 lowrank: list[str] = typer.Option([], "--lowrank", help="Run kinds (repeatable, e.g. align) whose "
                                                   "LoRA-trained model is kept as a low-rank delta (a few MB) that "
                                                   "loads like the original.")):
    """Copy every finished run's records (config, metrics, samples, curves; no full weights) to OUT, e.g. to commit
    the numbers behind a doc. `workbench leaderboard --runs OUT` reads the copy like the original; with
    --lowrank align, the aligned models can be attacked again from the copy."""
    from workbench.archive import ARCHIVE_NOTE, archive_runs  # deferred: startup

    copied = guard(archive_runs, runs, out, int(max_file_mb * 1e6), lowrank)
    for path in copied:
        left = json.loads((path / ARCHIVE_NOTE).read_text())["left_out"]
        console.print(f"{path}  [dim](left out: {len(left)} files)[/]")
    console.print(f"[green]{len(copied)} runs archived[/] into {out}")
