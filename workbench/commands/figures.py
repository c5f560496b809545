"""`workbench figures --out DIR [--runs ROOT]`: every figure of the runs under ROOT as HTML and PNG/SVG.

Reads run folders only (see `workbench.figures`): analysis runs' figures through their plots modules,
sweeps' metric-vs-p figures, the defense leaderboard, and defense training curves. DIR/<group>/<figure>.<fmt>
plus DIR/index.html.
"""
from __future__ import annotations

from pathlib import Path

import typer

from workbench.commands.common import console, guard


def figures_cmd(out: Path = typer.Option(..., "--out", "-o", help="Folder to write the figures into."),
                runs: Path = typer.Option(Path("runs"), "--runs", help="Runs root to read."),
                kind: list[str] | None = typer.Option(None, "--kind",
                                                      help="Which figures (repeatable): analysis, sweep, leaderboard, "
                                                           "training, study (default: all)."),
                match: str | None = typer.Option(None, "--match", help="Only run folders whose path contains this."),
                formats: str = typer.Option("html,png", help="Comma-separated: html, png, svg, pdf.")):
    """Export the figures of the chosen runs (HTML + PNG/SVG)."""
    from workbench.figures import export_runs  # deferred: plotly

    path, n_figures, written = guard(export_runs, runs, out, kind, match, formats.split(","))
    console.print(f"{n_figures} figures, {len(written)} files")
    console.print(f"[green]figures written:[/] {path}")
