"""`workbench figures --out DIR [--runs ROOT]`: every figure of the runs under ROOT as HTML and PNG/SVG.

Reads run folders only (see `workbench.figures`): analysis runs' figures through their plots modules,
sweeps' metric-vs-p figures, the defense leaderboard, and defense training curves. DIR/<group>/<figure>.<fmt> plus DIR/index.html.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def figures_cmd(out: Path = typer.Option(..., "--out", "-o", help="Folder to write the figures into."),
                runs: Path = typer.Option(Path("runs"), "--runs", help="Runs root to read."),
                kind: Optional[list[str]] = typer.Option(None, "--kind",
                                                         help="Which figures (repeatable): analysis, sweep, leaderboard, "
                                                              "training (default: all)."),
                match: Optional[str] = typer.Option(None, "--match", help="Only run folders whose path contains this."),
                formats: str = typer.Option("html,png", help="Comma-separated: html, png, svg, pdf.")):
    """Export the figures of the chosen runs (HTML + PNG/SVG)."""
    from workbench.cli import _guard, console

    path = _guard(export_runs, runs, out, kind, match, formats.split(","))
    console.print(f"[green]figures written:[/] {path}")


def export_runs(runs: Path, out: Path, kinds: list[str], match: str | None, formats: list[str]) -> Path:
    from workbench import figures

    if not Path(runs).is_dir():
        raise ValueError(f"--runs {runs}: no such folder (a runs root, e.g. the --out of `workbench quickstart`)")
    kinds = list(kinds or figures.FIGURE_KINDS)  # resolved here: importing figures (plotly) at CLI start is slow
    bad = sorted(set(kinds) - set(figures.FIGURE_KINDS))
    if bad:
        raise ValueError(f"--kind {bad}: unknown; use {', '.join(figures.FIGURE_KINDS)}")
    figs = figures.collect(runs, kinds, match)
    if not figs:
        raise ValueError(f"no figures to draw under {runs} (kinds {', '.join(kinds)}"
                         f"{f', matching {match!r}' if match else ''}): run `workbench quickstart`, "
                         f"`workbench figure2` or `workbench analyze` first")
    written = figures.export(figs, out, formats)
    from workbench.cli import console

    console.print(f"{len(figs)} figures, {len(written)} files")
    return Path(out) / "index.html"
