"""`workbench judge score IN.jsonl OUT.jsonl` | `rescore --runs ROOT --judge SPEC` | `report` | `train`.

score   reads JSONL records with string fields `prompt` and `response` (other fields are kept) and writes
        them back with `score` (P(harmful), 0..1) and `harmful` (score ≥ 0.5). The whole file is
        validated before anything is scored; a bad record is one error naming file, line and field.
        `--judge` picks any judge (`evaluation.moderation.get_judge`); `--embedder` is the older spelling.
rescore re-scores the saved harmful-set answers of every finished run under ROOT with a judge into a sidecar
        `scores/<judge version>.json` beside each run (`evaluation.rescore`); no file of a run is changed.
report  every judge (`--judge`, repeatable; default: the built-in ones) on the held-out human-labelled split:
        FN / FP (Wilson 95 %) and AUROC (DeLong 95 %) overall, by harm category and by answer type, next to the
        survey anchor; DeLong's paired test between judges; with `--runs ROOT`, Cohen's kappa between the judges
        and keyword refusal on the runs' harmful answers (`evaluation.judge_report`). --errors lists the
        misclassified rows, --more adds the held-out splits of the automatically labelled sources, --json writes
        the typed result, --figure FN / FP by answer type.
train   trains (or retrains) and caches the judge, printing its CV selection; `--judge minilm-ce` rebuilds the
        shipped cross-encoder folder, and with `--exclude-sources` a decoupled one in the cache.
"""
from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer
from rich.table import Table

from workbench.commands.common import JudgeOpt, console, guard


class EmbedderName(StrEnum):
    minilm = "minilm"
    hashing = "hashing"


EmbedderOpt = typer.Option(EmbedderName.minilm, "--embedder",
                           help="'minilm' (the real judge) or 'hashing' (fast stand-in for tests).")


def score_cmd(src: Path = typer.Argument(..., metavar="IN.jsonl", help="Records with 'prompt' and 'response'."),
              dst: Path = typer.Argument(..., metavar="OUT.jsonl", help="Where to write them with score/harmful."),
              embedder: EmbedderName = EmbedderOpt, judge: str | None = JudgeOpt):
    """Score (prompt, response) records: adds `score` (P(harmful)) and `harmful` (score ≥ 0.5)."""
    from workbench.evaluation.moderation import score_file  # deferred: torch

    n, k, ident = guard(score_file, src, dst, judge or embedder.value)
    console.print(f"{k} of {n} responses flagged harmful by judge {ident.name} ({ident.version}) → {dst}")


def rescore_cmd(runs: list[Path] = typer.Option(..., "--runs", help="Runs root (searched recursively, archived "
                                                                    "results/ folders too); repeatable."),
                judge: str = typer.Option(..., "--judge", help="minilm-lr, hashing-lr or a local Hugging Face folder "
                                                               "(a moderation classifier or a guard causal LM).")):
    """Re-score the saved harmful answers of finished runs with a judge: scores/<version>.json beside each run."""
    from workbench.evaluation.rescore import rescore_runs  # deferred: torch
    from workbench.vocabulary import fmt_rate  # deferred: startup

    outcomes = guard(rescore_runs, runs, judge)
    table = Table(title=f"rescored with {judge}")
    table.add_column("run", overflow="fold")
    for col in ("status", "HS recorded", "HS rescored", "HS+ rescored"):
        table.add_column(col)
    for o in outcomes:
        table.add_row(o.run.name, o.status, fmt_rate(o.recorded.get("hs"), decimals=0),
                      fmt_rate(o.rates.get("hs"), decimals=0), fmt_rate(o.rates.get("hs_plus"), decimals=0))
    console.print(table)
    done = sum(o.status == "scored" for o in outcomes)
    console.print(f"{done} run(s) scored, {len(outcomes) - done} skipped (already scored by this judge, or no harmful "
                  f"answers); the runs' own files are unchanged")


def report_cmd(judges: list[str] | None = typer.Option(None, "--judge", help="A judge to report: minilm-lr, "
                                                          "hashing-lr or a local Hugging Face folder; repeatable "
                                                          "(default: every built-in judge available here)."),
               embedder: EmbedderName | None = typer.Option(None, "--embedder", help="Older spelling of one --judge "
                                                                                   "(minilm / hashing)."),
               runs: list[Path] | None = typer.Option(None, "--runs", help="Runs root: also Cohen's kappa between the "
                                                                           "judges and keyword refusal on its runs' "
                                                                           "harmful answers; repeatable."),
               seed: int = typer.Option(0, "--seed", help="Seed of the held-out split."),
               errors: bool = typer.Option(False, "--errors", help="List the misclassified held-out rows."),
               more: bool = typer.Option(False, "--more", help="Also the held-out splits of the other sources."),
               json_out: Path | None = typer.Option(None, "--json", help="Also write the full report here."),
               figure: Path | None = typer.Option(None, "--figure", help="Also FN / FP by answer type as "
                                                                         "PATH.html and PATH.png.")):
    """Every judge on held-out human labels: FN / FP / AUROC with 95 % intervals overall, by harm category and by
    answer type; DeLong tests between judges; with --runs, kappa between judges and keyword refusal."""
    from workbench.evaluation.judge_report import judge_report  # deferred: torch

    specs = list(judges or []) + ([embedder.value] if embedder else [])
    result = guard(judge_report, specs or None, seed=seed, runs=runs or (), more=more)
    print_judge_report(result, errors=errors)
    if json_out:
        result.save(json_out)
        console.print(f"report written: {json_out}")
    if figure:
        from workbench.plots.export import export_figure  # deferred: plotly
        from workbench.plots.judges import plot_answer_type_errors  # deferred: plotly

        name = figure.stem if figure.suffix in (".html", ".png", ".svg") else figure.name
        paths = export_figure(plot_answer_type_errors(result), figure.parent, name)
        console.print("figure written: " + ", ".join(map(str, paths)))


def print_judge_report(result, errors: bool = False) -> None:
    """The report's tables (`evaluation.judge_report_tables`) on the console."""
    from workbench.evaluation.judge_report_tables import error_lines, report_tables  # deferred: torch

    for t in report_tables(result):
        table = Table(title=t.title)
        for col in t.head:
            table.add_column(col, overflow="fold")
        for row in t.rows:
            table.add_row(*row)
        console.print(table)
        for note in t.notes:
            console.print(note, highlight=False)
    if errors:
        for line in error_lines(result):
            console.print(line, highlight=False, markup=False)


class TrainableJudge(StrEnum):
    minilm_lr = "minilm-lr"
    hashing_lr = "hashing-lr"
    minilm_ce = "minilm-ce"


def train_cmd(embedder: EmbedderName = EmbedderOpt,
              retrain: bool = typer.Option(False, "--retrain", help="Train again even if cached."),
              judge: TrainableJudge | None = typer.Option(
                  None, "--judge", help="minilm-lr / hashing-lr (cached; --embedder is the older spelling) or "
                                        "minilm-ce (judge v3: rewrites its shipped folder, workbench/judges/)."),
              exclude_sources: str = typer.Option(
                  "", "--exclude-sources", help="minilm-ce only: comma-separated training sources to leave out, e.g. "
                                                "harmful_qa,template_refusals (the coupling check); the judge goes to "
                                                "the cache, not the shipped folder, and its path is printed."),
              out: Path | None = typer.Option(None, "--out", help="minilm-ce only: write the judge folder here.")):
    """Train the judge; prints where it is and what CV chose."""
    if judge == TrainableJudge.minilm_ce:
        from workbench.evaluation.judge_ce import ce_version, train_cross_encoder  # deferred: torch

        excluded = tuple(s.strip() for s in exclude_sources.split(",") if s.strip())
        ce, folder = guard(train_cross_encoder, excluded, out=out)
        h = ce.meta.hyper
        console.print(f"minilm-ce: lr={h['lr']:g}, epochs={h['epochs']}, threshold={ce.meta.threshold:.2f}, "
                      f"version {ce_version(folder)} → {folder} (score with --judge {folder})")
        return
    if exclude_sources or out:
        raise typer.BadParameter("--exclude-sources and --out are for --judge minilm-ce")
    from workbench.evaluation.judge import judge_dir, load_judge  # deferred: sklearn

    kind = judge.value.removesuffix("-lr") if judge else embedder.value
    trained = guard(load_judge, kind, retrain=retrain)
    w = trained.weights
    console.print(f"judge {w.embedder}: C={w.hyper.get('C')}, threshold={w.threshold:.2f} → "
                  f"{judge_dir(w.embedder, w.seed)}")
