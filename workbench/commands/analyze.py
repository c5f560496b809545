"""`workbench analyze NAME --model M [--compare M2] --out DIR`: one analysis → one run folder DIR.

DIR gets config.json (spec, seed, versions), result.json (+ tensors.safetensors), metrics.json (the
analysis' headline numbers, if any) and figures/*.html|png; written by `workbench.steps.run_analysis`.
"""
from __future__ import annotations

from pathlib import Path

import typer

from workbench.commands.common import console, guard, parse_params


def analyze(name: str = typer.Argument(..., help="Analysis name (see `workbench analyze --help`)."),
            model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Model or run folder."),
            compare: str | None = typer.Option(None, "--compare", help="Second model (e.g. the attacked one)."),
            seed: int = typer.Option(0, "--seed"),
            out: Path = typer.Option(..., "--out", "-o", help="Output folder (must not exist)."),
            param: list[str] = typer.Option([], "--param", "-p", help="Hyperparameter KEY=VALUE (JSON value)."),
            formats: str = typer.Option("html,png", help="Figure formats, comma-separated (html,png,svg).")):
    """Run an analysis and write result.json, tensors and figures."""
    from workbench.steps import run_analysis  # deferred: torch

    path = guard(run_analysis, name, model, compare, seed, out, parse_params(param), tuple(formats.split(",")))
    console.print(f"[green]analysis written:[/] {path}")
