"""`workbench study ascent --model BASE --kinds ce,log1p_ce,npo,unlikelihood --weights 0.1,1 --p 0.1 --out DIR`:
question 3 of docs/open-questions.md (`workbench.studies.ascent`). Aligns BASE with SFT plus each ascent term at
each weight (and plain SFT), measures the aligned models' collapse, attacks each, chooses per kind on the
validation split and reports the chosen configurations on the test sets: one run folder DIR (kind "study").
Rerunning an unfinished study resumes it; `--reuse` takes the cells of a finished one."""
from __future__ import annotations

from pathlib import Path

import typer

from workbench.commands.common import console, guard


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--weights expects comma-separated numbers, got {text!r}") from None


def ascent_cmd(model: str = typer.Option(..., "--model", "-m", help="The model before alignment (name or folder)."),
               kinds: str = typer.Option("ce,log1p_ce,npo,unlikelihood", help="Ascent losses, comma-separated."),
               weights: str = typer.Option("0.1,1", help="Ascent weights, comma-separated (each > 0)."),
               p: float = typer.Option(0.1, "--p", help="Harmful ratio of the attack."),
               seed: int = typer.Option(0, "--seed"),
               preset: str | None = typer.Option(None, help="'full' or 'tiny' (default: by model)."),
               beta: float = typer.Option(0.1, help="NPO's β."),
               out: Path = typer.Option(..., "--out", "-o", help="The study's run folder (must not exist; rerun the "
                                                                  "same command to resume an unfinished study)."),
               reuse: list[Path] = typer.Option([], "--reuse", help="A finished ascent study of the same model, p, "
                                                                    "seed, preset and β whose cells are reused "
                                                                    "(repeatable).")):
    """Does a bounded gradient-ascent term (log(1+CE), NPO, unlikelihood) avoid the collapse plain −CE causes?"""
    from workbench.presets import default_preset
    from workbench.studies.ascent import StudyIncomplete, run_study  # deferred: torch
    from workbench.studies.ascent_spec import RESULT_FILE, study_spec
    from workbench.studies.ascent_summary import load_result

    def run():
        spec = study_spec(model, [k.strip() for k in kinds.split(",") if k.strip()], _floats(weights), p, seed,
                          preset or default_preset(model), beta=beta)
        return run_study(spec, out, reuse=reuse)

    try:
        path = guard(run)
    except StudyIncomplete as err:
        console.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(1) from None
    summary = load_result(path)
    for c in summary.chosen:
        if c.key is None:
            console.print(f"{c.kind}: [yellow]none chosen[/] — {c.reason}")
            continue
        test = summary.cell(c.key).test
        hs = f"test HS {test.hs.value:.0f} % [{test.hs.low:.0f}–{test.hs.high:.0f}]" if test else "no test run"
        console.print(f"{c.kind}: weight {c.weight:g} ({c.reason}); {hs}")
    console.print(f"[green]ascent study written:[/] {path}  ({RESULT_FILE}, figures/)")
