"""Re-score the saved answers of finished runs with another judge: one sidecar `scores/<version>.json` per run.

Why: HS / HS+ depend on the judge, and a run's answers are saved (samples.jsonl). Re-scoring them costs a judge
pass, not a generation, so a table can be rebuilt under a better moderation model — also for the archived runs
under results/, whose models are gone.

    workbench judge rescore --runs ROOT --judge SPEC      rescore_runs([ROOT], SPEC)
    workbench leaderboard   --runs ROOT --judge SPEC      HS / HS+ from `judged_rates`, pairs from `judged_samples`

`rescore_run` reads the harmful-set records of a run's samples.jsonl, scores their answers with
`scorers.score_records` (the harness's own code: the same threshold, coherence check and HS / HS+ definitions)
on copies, and writes `<run>/scores/<judge version>.json` (`ScoreSidecar`): the judge, HS and HS+ with their
Wilson intervals in the shape metrics.json holds them, the SHA-256 of the samples.jsonl it read, and one
`SampleScore` per answer (its line in samples.jsonl); when the records carry more than one `source` (the standard
harmful set), also HS / HS+ / refusal per source (`by_source`, as metrics.json's `harmful_by_source`). It never
changes a file of the run: the sidecar is the one file a finished run folder may gain (docs/architecture.md, "The
run folder"), written atomically, never overwritten. A run is skipped when that version already has a sidecar, or
when the run's own metrics.json was scored by that version (its numbers are already the judge's), or when it holds
no harmful-set answers.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from tqdm.auto import tqdm

from workbench.evaluation.moderation import JudgeId, ModerationJudge, get_judge, judge_id, resolve_spec
from workbench.evaluation.scorers import score_records, source_metrics
from workbench.evaluation.stats import Rate
from workbench.machine import configure_threads
from workbench.runs import Run, list_runs

FORMAT = "workbench-scores/1"
SCORES_DIR = "scores"
HS_METRICS = ("hs", "hs_plus")


class SampleScore(BaseModel):
    """One re-scored answer: the harmful-set record on line `line` (0-based) of the run's samples.jsonl."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    line: int
    prompt: str
    judge_score: float
    harmful: bool
    coherent: bool


class ScoreSidecar(BaseModel):
    """`scores/<version>.json`: a run's harmful-set answers as one judge scores them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["workbench-scores/1"] = FORMAT
    judge: JudgeId
    hs: Rate
    hs_plus: Rate
    samples_sha256: str  # of the samples.jsonl it was computed from
    created: str
    samples: list[SampleScore]
    # {source: {"refusal_harmful", "hs", "hs_plus"}} when the answers come from several benchmarks; None (and not
    # written) otherwise, so sidecars of single-source runs read and write as before
    by_source: dict[str, dict[str, Rate]] | None = None

    def rates(self) -> dict[str, dict]:
        """{"hs": ..., "hs_plus": ...} as metrics.json holds them."""
        return {"hs": self.hs.to_dict(), "hs_plus": self.hs_plus.to_dict()}


@dataclass(frozen=True)
class RescoreOutcome:
    run: Path
    status: Literal["scored", "has sidecar", "in metrics.json", "no harmful answers"]
    rates: dict  # HS / HS+ under the judge (empty for "no harmful answers")
    recorded: dict  # HS / HS+ in the run's metrics.json (empty when it has none)


def sidecar_path(run: str | Path, version: str) -> Path:
    return Path(run) / SCORES_DIR / f"{version}.json"


def read_sidecar(run: str | Path, version: str) -> ScoreSidecar | None:
    """The run's sidecar of this judge version; None when there is none, ValueError when it is damaged."""
    path = sidecar_path(run, version)
    if not path.is_file():
        return None
    try:
        return ScoreSidecar.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as err:
        raise ValueError(f"{path} is not a valid scores file ({err.errors()[0]['msg']}); delete it and rescore") \
            from None


def recorded_judge(run: Run) -> JudgeId | None:
    """The judge that scored the run's metrics.json (None: the run has no HS)."""
    return JudgeId.from_dict(run.metrics.get("judge"))


def _recorded_rates(run: Run) -> dict[str, dict]:
    return {m: run.metrics[m] for m in HS_METRICS if m in run.metrics}


def _harmful_lines(run: Run) -> tuple[str, list[tuple[int, dict]]]:
    """(SHA-256 of samples.jsonl, [(line, record)] of its harmful-set records)."""
    path = run.path / "samples.jsonl"
    if not path.is_file():
        return "", []
    raw = path.read_bytes()
    lines = raw.decode("utf-8").splitlines()
    records = [(i, json.loads(line)) for i, line in enumerate(lines) if line.strip()]
    return hashlib.sha256(raw).hexdigest(), [(i, r) for i, r in records if r.get("set") == "harmful"]


def rescore_run(run: Run, judge: ModerationJudge) -> RescoreOutcome:
    """Score one run's harmful-set answers with `judge` into its sidecar (module doc); skips as the doc says."""
    recorded = _recorded_rates(run)
    existing = read_sidecar(run.path, judge.version)
    if existing is not None:
        return RescoreOutcome(run.path, "has sidecar", existing.rates(), recorded)
    ran_with = recorded_judge(run)
    if ran_with is not None and ran_with.version == judge.version and recorded:
        return RescoreOutcome(run.path, "in metrics.json", recorded, recorded)
    digest, lines = _harmful_lines(run)
    if not lines:
        return RescoreOutcome(run.path, "no harmful answers", {}, recorded)
    copies = [{"prompt": r["prompt"], "answer": r.get("answer") or "", "source": r.get("source") or "",
               "refusal": bool(r.get("refusal"))} for _, r in lines]
    metrics = score_records(judge, copies)
    by_source = {src: {m: Rate(**v) for m, v in rates.items()} for src, rates in source_metrics(copies).items()}
    sidecar = ScoreSidecar(judge=judge.identity, hs=Rate(**metrics["hs"]), hs_plus=Rate(**metrics["hs_plus"]),
                           samples_sha256=digest, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           by_source=by_source or None,
                           samples=[SampleScore(line=i, prompt=c["prompt"], judge_score=c["judge_score"],
                                                harmful=c["harmful"], coherent=c["coherent"])
                                    for (i, _), c in zip(lines, copies, strict=True)])
    _write_new(sidecar_path(run.path, judge.version), sidecar.model_dump_json(indent=1, exclude_none=True) + "\n")
    return RescoreOutcome(run.path, "scored", sidecar.rates(), recorded)


def _write_new(path: Path, text: str) -> None:
    """Write a file that must not exist yet, atomically (a reader never sees half of it)."""
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    if path.exists():  # another process wrote the same version meanwhile: the same numbers
        tmp.unlink()
        return
    os.replace(tmp, path)


def rescore_runs(roots: Iterable[str | Path], spec: str, progress: bool = True) -> list[RescoreOutcome]:
    """`rescore_run` on every finished run under the roots (recursively: archived ones under results/ too)."""
    roots = [Path(r) for r in roots]
    for r in roots:
        if not r.is_dir():
            raise ValueError(f"--runs {r}: no such folder (a runs root, e.g. runs/ or results/defense-grid)")
    judge = get_judge(spec)
    configure_threads()
    runs = [run for r in roots for run in list_runs(r)]
    return [rescore_run(run, judge) for run in tqdm(runs, desc="rescore", unit="run", disable=not progress)]


def rescore_command(roots: Iterable[str | Path], spec: str) -> str:
    return f"workbench judge rescore {' '.join(f'--runs {r}' for r in roots)} --judge {spec}"


def judged_rates(runs: Iterable[str | Path], spec: str, roots: Iterable[str | Path] = ()) -> tuple[JudgeId, dict]:
    """(the judge, {run: {"hs", "hs_plus"}}) under the judge `spec` names: from the run's metrics.json when that
    judge scored it, else from its sidecar; {} for a run without harmful answers. ValueError naming the rescore
    command when some run has answers but no scores of this judge (the leaderboard only reads run folders)."""
    ident = judge_id(spec)
    out, missing = {}, []
    for path in runs:
        run = Run(Path(path))
        ran_with = recorded_judge(run)
        sidecar = read_sidecar(run.path, ident.version)
        if ran_with is not None and ran_with.version == ident.version:
            out[str(path)] = _recorded_rates(run)
        elif sidecar is not None:
            out[str(path)] = sidecar.rates()
        elif _harmful_lines(run)[1]:
            missing.append(run.path)
        else:
            out[str(path)] = {}
    if missing:
        raise ValueError(f"{len(missing)} run(s) have no scores by judge {ident.name} ({ident.version}), e.g. "
                         f"{missing[0]}; score them first (adds scores/{ident.version}.json beside each run, changes "
                         f"nothing else): {rescore_command(roots or [missing[0].parent], resolve_spec(spec))}")
    return ident, out


def judged_samples(run: Run, version: str | None) -> list[dict]:
    """The run's samples with the harmful-set flags (judge_score, harmful, coherent) of judge `version`: as saved
    when None or when that judge scored the run, else from its sidecar (ValueError when it has none)."""
    ran_with = recorded_judge(run)
    if version is None or (ran_with is not None and ran_with.version == version):
        return run.samples()
    sidecar = read_sidecar(run.path, version)
    if sidecar is None:
        raise ValueError(f"{run.path} has no scores/{version}.json: run `workbench judge rescore` first")
    by_line = {s.line: s for s in sidecar.samples}
    lines = (run.path / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        rec = json.loads(line)
        if i in by_line:
            s = by_line[i]
            rec = {**rec, "judge_score": s.judge_score, "harmful": s.harmful, "coherent": s.coherent}
        out.append(rec)
    return out
