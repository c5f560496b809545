"""`workbench analyze NAME --model M [--compare M2] --out DIR`: one analysis → one run folder DIR.

DIR gets config.json (spec, seed, versions), result.json (+ tensors.safetensors), metrics.json (the
analysis' headline numbers, if any) and figures/*.html|png.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def analyze(name: str = typer.Argument(..., help="Analysis name (see `workbench analyze --help`)."),
            model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Model or run folder."),
            compare: Optional[str] = typer.Option(None, "--compare", help="Second model (e.g. the attacked one)."),
            seed: int = typer.Option(0, "--seed"),
            out: Path = typer.Option(..., "--out", "-o", help="Output folder (must not exist)."),
            param: list[str] = typer.Option([], "--param", "-p", help="Hyperparameter KEY=VALUE (JSON value)."),
            formats: str = typer.Option("html,png", help="Figure formats, comma-separated (html,png,svg).")):
    """Run an analysis and write result.json, tensors and figures."""
    from workbench.cli import _guard, _parse_params, console

    path = _guard(run_analysis, name, model, compare, seed, out, _parse_params(param), tuple(formats.split(",")))
    console.print(f"[green]analysis written:[/] {path}")


def run_analysis(name: str, model: str, compare: str | None, seed: int, out: Path, params: dict,
                 formats=("html", "png"), progress: bool = True) -> Path:
    from pydantic import ValidationError

    from workbench.analysis import AnalysisContext, get_analysis
    from workbench.plots.export import export_all
    from workbench.runs import RunWriter
    from workbench.steps import model_ref, seed_everything
    from workbench.vocabulary import analysis_key

    name = analysis_key(name)  # recorded in the one spelling, whichever the command line used
    mod, plots = get_analysis(name)
    try:
        spec = mod.Spec(**params)
    except ValidationError as e:
        err = e.errors()[0]
        raise ValueError(f"bad parameter for analysis {name!r}: {err['loc']}: {err['msg']}; "
                         f"it accepts: {', '.join(mod.Spec.model_fields)}") from None
    cfg = {"analysis": name, "params": spec.model_dump(), "model": model_ref(model),
           "compare": model_ref(compare) if compare else None}
    seed_everything(seed)
    with RunWriter(out.parent, "analysis", name, cfg, seed=seed, final=out) as run:
        ctx = AnalysisContext(model=model, compare=compare, seed=seed, progress=progress)
        result = mod.run(ctx, spec)
        result.save(run.path)
        headline = getattr(result, "headline", None)
        run.write_metrics(headline() if callable(headline) else {})
        export_all(plots.figures(result), run.path / "figures", formats)
    return run.final_path
