"""`workbench leaderboard --runs DIR [--runs DIR2 ...] [--out PREFIX]`: every attacked model under the DIRs —
undefended, or defended at the alignment, fine-tuning or post-fine-tuning stage — in one table (PREFIX.md,
PREFIX.csv), grouped bars of HS/HS+/FA/benign refusal per attack (PREFIX_bars.html/png) and an HS-vs-FA figure
(PREFIX_hs_fa.html/png), read from the run folders (`workbench.leaderboard`). Several roots make one board (e.g. a
hyperparameter sweep's runs next to the grid whose SFT row they are paired with). `--stage` narrows it to one
stage's comparison. With alignment-stage defenses, PREFIX_alignment.md puts each aligned model's own refusal / FA
next to its attacked rates. `--judge SPEC` takes HS / HS+ (and their paired differences) from that judge's scores:
each run's metrics.json when that judge scored it, else the run's scores/<version>.json sidecar written by
`workbench judge rescore`; when some are missing it stops and names that command (the leaderboard only reads)."""
from __future__ import annotations

from pathlib import Path

import typer

from workbench.commands.common import console, guard


def leaderboard_cmd(runs: list[Path] = typer.Option(..., "--runs", help="Runs root to read (searched recursively); "
                                                                        "repeat to read several as one board."),
                    out: Path | None = typer.Option(None, "--out", "-o",
                                                       help="File prefix (default FIRST_RUNS/leaderboard)."),
                    formats: str = typer.Option("html,png", help="Figure formats, comma-separated (html,png,svg)."),
                    stage: list[str] | None = typer.Option(
                        None, "--stage", help="Only these defense stages (repeatable): none, alignment, fine-tuning, "
                                              "post-fine-tuning (also finetune, post); plain SFT rows stay as the "
                                              "baseline."),
                    judge: str | None = typer.Option(
                        None, "--judge", help="HS / HS+ by this judge (minilm-lr, hashing-lr or a local HF folder): "
                                              "from metrics.json when it scored the run, else from the sidecars of "
                                              "`workbench judge rescore`. Default: each run's own metrics.json.")):
    """Leaderboard of all defenses of all three stages against the same attacks: HS, HS+, FA, refusal, cost."""
    from workbench.leaderboard import build, write  # deferred: plotly
    from workbench.vocabulary import parse_stage  # deferred: startup

    def run():
        board = build(runs, [parse_stage(s, none=True) for s in stage] if stage else None, judge=judge)
        return board, write(board, out or Path(runs[0]) / "leaderboard", [f.strip() for f in formats.split(",")])

    board, written = guard(run)
    typer.echo(board.to_markdown())
    if board.judge is not None:
        console.print(f"HS and HS+ by judge {board.judge.name} ({board.judge.version})")
    console.print(f"{len(board.rows)} attacked models; written: {', '.join(str(p) for p in written)}")
