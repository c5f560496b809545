"""`workbench study basins --runs ROOT [--runs ROOT2] --directions 8 --seed 0 --out DIR`: does an alignment-stage
defense widen the safety basin, or only lower the harmful loss? One study folder DIR (`workbench.studies.basins`).

`--pairs-only` lists the aligned models and attack runs the study would use, and measures nothing.
"""
from __future__ import annotations

from pathlib import Path

import typer

from workbench.commands.common import JudgeOpt, console, guard


def basins_cmd(runs: list[Path] = typer.Option(..., "--runs", help="Runs root(s) holding align runs and the attack "
                                                                      "runs of them (repeat for several)."),
               out: Path = typer.Option(Path("runs/study-basins"), "--out", "-o",
                                        help="Study folder (must not exist; an interrupted study of the same spec "
                                             "resumes)."),
               directions: int = typer.Option(8, "--directions", help="Shared random directions per model."),
               seed: int = typer.Option(0, "--seed", help="First direction seed (seeds seed … seed + N − 1) and the "
                                                          "bootstrap's seed."),
               points: int = typer.Option(21, "--points", help="Points per random / gradient slice (odd)."),
               span: float = typer.Option(1.0, "--span", help="Slices cover α ∈ [−span, span]."),
               line_points: int = typer.Option(21, "--line-points", help="Points on the aligned → attacked line."),
               attack: str = typer.Option("harmful_ft", "--attack", help="Attack kind of the kept attack runs."),
               p: float | None = typer.Option(0.1, "--p", help="Harmful ratio of the kept attack runs "
                                                               "(negative: any)."),
               attack_seed: int | None = typer.Option(None, "--attack-seed", help="Seed of the kept attack runs "
                                                                                  "(default: any; averaged)."),
               judge: str | None = JudgeOpt,
               prompts: int = typer.Option(32, "--prompts", help="Harmful prompts the safety probe asks."),
               pairs: int = typer.Option(32, "--pairs", help="Held-out harmful Q→A pairs for the harmful loss."),
               max_new_tokens: int = typer.Option(8, "--max-new-tokens", help="Greedy tokens per probe answer."),
               reattack: bool = typer.Option(False, "--reattack", help="Re-train attack runs archived without "
                                                                       "weights (results/), for the aligned → "
                                                                       "attacked line; each deleted after use."),
               resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue an interrupted study of "
                                                                         "the same options (default), or start "
                                                                         "it over."),
               pairs_only: bool = typer.Option(False, "--pairs-only", help="Only list the aligned / attacked pairs."),
               formats: str = typer.Option("html,png", help="Figure formats, comma-separated (html,png,svg).")):
    """VISAGE on shared random directions, along the harmful-loss gradient and the aligned → attacked line, and the
    harmful loss, of every aligned model; which predicts post-attack HS (Spearman ρ, bootstrap interval)."""
    from workbench.studies.basins import BasinsSpec, run_basins  # deferred: torch
    from workbench.studies.basins_measure import MeasureSpec
    from workbench.studies.basins_pairs import find_pairs

    def build() -> BasinsSpec:
        measure = MeasureSpec(n_directions=directions, n_points=points, span=span, line_points=line_points,
                              n_prompts=prompts, n_pairs=pairs, max_new_tokens=max_new_tokens)
        return BasinsSpec(roots=[str(r) for r in runs], attack=attack, p=None if p is not None and p < 0 else p,
                          attack_seed=attack_seed, judge=judge, measure=measure,
                          reattack=reattack)

    spec = guard(_validated, build)
    if pairs_only:
        pairing = guard(find_pairs, spec.roots, spec.attack, spec.p, spec.attack_seed, spec.judge)
        console.print(pairing.summary(), markup=False, soft_wrap=True)
        return
    path = guard(run_basins, spec, out, seed, True, tuple(formats.split(",")), resume)
    console.print(f"[green]basin study written:[/] {path}  (report.md, basins.json, figures/)")


def _validated(build):
    """The spec, with a pydantic error turned into one line for the boundary."""
    from pydantic import ValidationError  # deferred: pydantic

    try:
        return build()
    except ValidationError as err:
        e = err.errors()[0]
        raise ValueError(f"bad study option {'.'.join(map(str, e['loc']))}: {e['msg']}") from None
