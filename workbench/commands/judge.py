"""`workbench judge score IN.jsonl OUT.jsonl` | `rescore --runs ROOT --judge SPEC` | `report` | `train`.

score   reads JSONL records with string fields `prompt` and `response` (other fields are kept) and writes
        them back with `score` (P(harmful), 0..1) and `harmful` (score ≥ 0.5). The whole file is
        validated before anything is scored; a bad record is one error naming file, line and field.
        `--judge` picks any judge (`evaluation.moderation.get_judge`); `--embedder` is the older spelling.
rescore re-scores the saved harmful-set answers of every finished run under ROOT with a judge into a sidecar
        `scores/<judge version>.json` beside each run (`evaluation.rescore`); no file of a run is changed.
report  FN / FP with Wilson 95 % intervals on the held-out human-labelled split (judge_labelled eval),
        next to the survey anchor, plus the confusion matrix; --errors lists the misclassified rows,
        --more adds the held-out splits of the automatically labelled sources.
train   trains (or retrains) and caches the judge, printing its CV selection; `--judge minilm-ce` rebuilds the
        shipped cross-encoder folder, and with `--exclude-sources` a decoupled one in the cache.
"""
from __future__ import annotations

import json
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


def report_cmd(embedder: EmbedderName = EmbedderOpt,
               errors: bool = typer.Option(False, "--errors", help="List the misclassified held-out rows."),
               more: bool = typer.Option(False, "--more", help="Also the held-out splits of the other sources."),
               json_out: Path | None = typer.Option(None, "--json", help="Also write the full report here.")):
    """FN / FP with 95 % intervals on held-out human labels, next to the survey anchor."""
    from workbench.evaluation.judge import heldout_report, load_judge, secondary_reports  # deferred: sklearn
    from workbench.vocabulary import fmt_rate  # deferred: startup

    judge = guard(load_judge, embedder.value)
    rep = guard(heldout_report, judge)
    w = judge.weights
    table = Table(title=f"moderation judge ({w.embedder}) on held-out judge_labelled (n={rep.fn.n + rep.fp.n})")
    for c in ("rate", "ours (Wilson 95 %)", f"anchor: {rep.anchor['source']}"):
        table.add_column(c)
    table.add_row("FN (harmful missed)", fmt_rate(rep.fn, counts=True), f"{rep.anchor['fn']:.2f} %")
    table.add_row("FP (benign flagged)", fmt_rate(rep.fp, counts=True), f"{rep.anchor['fp']:.2f} %")
    console.print(table)
    c = rep.confusion
    cm = Table(title="confusion matrix (rows: human label, columns: judge)")
    for col in ("", "judge: harmful", "judge: not harmful"):
        cm.add_column(col)
    cm.add_row("label: harmful (objective achieved)", str(c["tp"]), str(c["fn"]))
    cm.add_row("label: not harmful", str(c["fp"]), str(c["tn"]))
    console.print(cm)
    best = w.cv.get("best") or {}
    console.print(f"hyperparameters: C={w.hyper.get('C')}, judge_labelled share={w.hyper.get('judge_share')}, "
                  f"threshold={w.threshold:.2f} (CV on train only: "
                  + ", ".join(f"{k[3:]}={v:.3f}" for k, v in best.items() if k.startswith("cv_")) + ")")
    console.print("training set: " + ", ".join(f"{src} {v['harmful']}+/{v['not_harmful']}-"
                                               for src, v in w.training.items()))
    if more:
        t2 = Table(title="other held-out splits (automatic labels, see judge.secondary_examples)")
        for col in ("set", "FN", "FP"):
            t2.add_column(col)
        for name, r in guard(secondary_reports, judge).items():
            t2.add_row(name, *[fmt_rate(x, counts=True) if x.n else "—" for x in (r.fn, r.fp)])
        console.print(t2)
    if errors:
        for e in rep.errors:
            kind = "FN" if e["label"] else "FP"
            console.print(f"[bold]{kind}[/] score={e['score']:.2f} refusal={e['refusal']} [{e['category']}] "
                          f"{e['prompt'][:100]!r}\n    → {e['response'][:200]!r}", highlight=False)
    if json_out:
        json_out.write_text(json.dumps(rep.to_dict(), indent=1), encoding="utf-8")
        console.print(f"report written: {json_out}")


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
