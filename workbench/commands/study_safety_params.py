"""`workbench study safety-params --model ALIGNED_RUN [--base MODEL] --k 0.5,1,2 --criteria wanda,snip,... --out DIR`:
which criterion finds the safety-critical weights, and when should it act (`workbench.studies.safety_params`).
One run folder DIR (kind "study"): the safety-specificity curves, the Jaccard overlaps, the SafeLoRA subspace
shares, with `--act` the defenses each criterion drives; figures in DIR/figures."""
from __future__ import annotations

from pathlib import Path

import typer

from workbench.commands.common import console, guard, parse_params


def _floats(text: str, option: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{option} expects comma-separated numbers, got {text!r}") from None


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


def safety_params_cmd(
        model: str = typer.Option(..., "--model", "-m", help="The aligned model: an align run folder (its record "
                                                             "names the base), or any model with --base."),
        out: Path = typer.Option(..., "--out", "-o", help="The study's run folder (must not exist)."),
        base: str | None = typer.Option(None, "--base", help="The model before alignment (for delta and the SafeLoRA "
                                                             "subspace); default: read from the align run."),
        k: str = typer.Option("0.5,1,2,4,8", "--k", help="Percentages of weights pruned, comma-separated, in "
                                                         "(0, 100]."),
        criteria: str | None = typer.Option(None, "--criteria", help="Comma-separated criteria (default: all): wanda, "
                                            "snip, wanda_setdiff, snip_setdiff, pq, grad, random, delta."),
        group: str = typer.Option("matrix", "--group", help="'matrix' (top k% of each matrix) or 'global'."),
        seed: int = typer.Option(0, "--seed", help="Seed of the calibration draws, random scores and subspaces."),
        act: bool = typer.Option(False, "--act/--no-act", help="Also let each criterion drive Freeze and "
                                                              "post-attack pruning (attack runs: slow)."),
        act_k: float = typer.Option(1.0, "--act-k", help="Percent pruned after the attack (--act)."),
        preset: str | None = typer.Option(None, "--preset", help="'full' or 'tiny' attack / eval sizes of --act "
                                                                 "(default: by model)."),
        judge: bool = typer.Option(False, "--judge/--no-judge", help="Also HS by the built-in judge on the curves."),
        param: list[str] = typer.Option([], "--param", "-p", help="Any other study parameter KEY=VALUE (JSON value): "
                                                                  "n_eval_prompts, n_utility, n_calibration, p, ..."),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted study of the same spec and "
                                                            "seed (its measurements and finished act runs)."),
        formats: str = typer.Option("html,png", help="Figure formats, comma-separated (html,png,svg).")):
    """Which criterion finds the safety-critical weights, and when should it act? (docs/open-questions.md)"""
    from workbench.studies.safety_params import make_spec, run_study  # deferred: torch

    def run():
        params = {**parse_params(param), "k": _floats(k, "--k"), "group": group, "act": act, "act_k": act_k,
                  "preset": preset, "judge": judge}
        if criteria is not None:
            params["criteria"] = _names(criteria)
        spec = make_spec(**params)
        return run_study(spec, model, out, base=base, seed=seed, formats=tuple(formats.split(",")), resume=resume)

    path = guard(run)
    console.print(f"[green]study written:[/] {path}")
