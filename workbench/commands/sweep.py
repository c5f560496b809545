"""`workbench sweep` (grid of model × attack × p × seed) and `workbench figure2` (the survey's Figure 2).

The grid runs in `workbench.sweep.run_sweep`; Figure 2 is drawn by `workbench.figure2.write_figure2`.
"""
from __future__ import annotations

from pathlib import Path

import typer

from workbench.commands.common import console, guard

FIGURE2_PS = "0,0.05,0.1,0.2,0.3"


def _floats(s: str) -> list[float]:
    try:
        return [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {s!r}") from None


def _models(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        label, _, ref = item.partition("=")
        out[label if ref else label.rstrip("/").split("/")[-1]] = ref or label
    return out


def sweep_cmd(model: list[str] = typer.Option(..., "--model", "-m", help="LABEL=MODEL (repeatable) or MODEL."),
              attack: list[str] = typer.Option(["harmful_ft"], "--attack", help="Attack name (repeatable)."),
              p: str = typer.Option("0.1", "--p", help="Harmful ratios, comma-separated."),
              seeds: str = typer.Option("0", "--seeds", help="Seeds, comma-separated."),
              n: int | None = typer.Option(None, "--n", help="User samples per cell."),
              preset: str | None = typer.Option(None, help="'full' or 'tiny' sizes."),
              backend: str = typer.Option("local", help="'local' or 'ray'."),
              address: str | None = typer.Option(None, help="Ray cluster address (default: start a local one)."),
              out: Path = typer.Option(Path("runs/sweep"), "--out", "-o")):
    """Run every cell of the grid that is not done yet; failed cells are reported, not fatal."""
    from workbench.sweep import run_sweep  # deferred: pydantic

    status = guard(run_sweep, _models(model), attack, _floats(p), [int(s) for s in _floats(seeds)], n, preset,
                   backend, address, out)
    console.print(f"done {len(status['done'])}, skipped {len(status['skipped'])} (already done), "
                  f"failed {len(status['failed'])}")
    for key, err in status["failed"].items():
        console.print(f"[red]failed:[/] {key}: {err.splitlines()[0]}")
    if status["failed"]:
        raise typer.Exit(1)


def figure2_cmd(aligned: str = typer.Option(..., help="Aligned model (an align run folder)."),
                base: str = typer.Option("smollm2-135m-instruct", help="The non-aligned base model."),
                p: str = typer.Option(FIGURE2_PS, "--p", help="Harmful ratios."),
                seeds: str = typer.Option("0", "--seeds"),
                n: int | None = typer.Option(None, "--n", help="User samples per cell."),
                preset: str | None = typer.Option(None),
                backend: str = typer.Option("local"),
                out: Path = typer.Option(Path("runs/figure2"), "--out", "-o")):
    """The survey's Figure 2: HS and FA vs p for the non-aligned and the aligned model (sst2)."""
    from workbench.figure2 import write_figure2  # deferred: plotly
    from workbench.sweep import run_sweep  # deferred: pydantic

    status = guard(run_sweep, {"non-aligned": base, "aligned": aligned}, ["harmful_ft"], _floats(p),
                   [int(s) for s in _floats(seeds)], n, preset, backend, None, out)
    paths, table = guard(write_figure2, out)
    console.print(table)
    console.print(f"figures: {', '.join(str(x) for x in paths)}")
    if status["failed"]:
        raise typer.Exit(1)
