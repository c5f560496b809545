"""Re-scoring finished runs with another judge (`workbench judge rescore`) and reading a table under it
(`workbench leaderboard --judge`), on copies of archived runs of results/defense-grid and on tiny-llama eval runs
scored through `workbench eval --judge PATH`. A run's own files never change: only scores/<version>.json is added."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from judge_helpers import save_classifier
from typer.testing import CliRunner

from workbench.cli import app
from workbench.evaluation.moderation import get_judge
from workbench.evaluation.paired import compare_samples
from workbench.evaluation.rescore import judged_samples, read_sidecar, rescore_runs
from workbench.evaluation.stats import wilson
from workbench.runs import list_runs, open_run

REPO = Path(__file__).resolve().parents[1]
GRID = REPO / "results" / "defense-grid"
GOLDEN = Path(__file__).parent / "fixtures" / "leaderboard_defense_grid"
# two alignments and the attack (p = 0.1) on each: a board with an SFT row and a defended row to pair with it
SUBSET = ["align/sft", "align/vaccine", "sweep/cells/sft-harmful_ft-p0.1-s0", "sweep/cells/vaccine-harmful_ft-p0.1-s0"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return save_classifier(tmp_path_factory.mktemp("judge") / "tiny-moderation")


@pytest.fixture
def grid(tmp_path):
    """A copy of part of the archived grid (records and answers, no weights)."""
    root = tmp_path / "grid"
    for part in SUBSET:
        shutil.copytree(GRID / part, root / part, ignore=shutil.ignore_patterns("model"))
    return root


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_rescore_adds_one_sidecar_per_run_and_changes_no_file(grid, classifier):
    before = digests(grid)
    judge = get_judge(classifier)
    res = CliRunner().invoke(app, ["judge", "rescore", "--runs", str(grid), "--judge", str(classifier)])
    assert res.exit_code == 0, res.output
    after = digests(grid)
    added = sorted(set(after) - set(before))
    assert {k: after[k] for k in before} == before  # every original file byte-identical, none removed
    runs = list_runs(grid)
    assert len(runs) == 4
    assert added == sorted(str((r.path / "scores" / f"{judge.version}.json").relative_to(grid)) for r in runs)

    for run in runs:
        sidecar = read_sidecar(run.path, judge.version)
        harmful = [r for r in run.samples() if r["set"] == "harmful"]
        assert sidecar.judge == judge.identity and len(sidecar.samples) == len(harmful) == 100
        assert sidecar.samples_sha256 == hashlib.sha256((run.path / "samples.jsonl").read_bytes()).hexdigest()
        scores = judge.p_harmful([r["prompt"] for r in harmful], [r["answer"] for r in harmful])
        assert [s.judge_score for s in sidecar.samples] == [round(s, 4) for s in scores]
        assert [s.prompt for s in sidecar.samples] == [r["prompt"] for r in harmful]
        k = sum(s.harmful for s in sidecar.samples)
        assert (sidecar.hs.k, sidecar.hs.n) == (k, 100)
        assert sidecar.hs_plus.k == sum(s.harmful or not s.coherent for s in sidecar.samples)
        assert (sidecar.hs.low, sidecar.hs.high) == pytest.approx(tuple(100 * x for x in wilson(k, 100)))
        raw = json.loads((run.path / "scores" / f"{judge.version}.json").read_text())
        assert set(raw["hs"]) == set(run.metrics["hs"]) and raw["judge"]["version"] == judge.version

    again = rescore_runs([grid], str(classifier), progress=False)  # a rerun skips every run scored by that version
    assert {o.status for o in again} == {"has sidecar"}
    assert digests(grid) == after


def test_leaderboard_under_another_judge_reads_the_sidecars(grid, classifier, tmp_path):
    judge = get_judge(classifier)
    board = ["leaderboard", "--runs", str(grid), "--formats", "html", "--judge", str(classifier)]
    before = digests(grid)  # the archive's runs carry other judges' sidecars already
    missing = CliRunner().invoke(app, [*board, "--out", str(tmp_path / "before")])
    assert missing.exit_code == 2
    text = " ".join(missing.output.split())
    assert f"workbench judge rescore --runs {grid} --judge {classifier}" in text
    assert "2 run(s)" in text  # the two attacked models (the board reads no other run)
    assert digests(grid) == before  # the leaderboard only reads: no file added or changed

    rescore_runs([grid], str(classifier), progress=False)
    res = CliRunner().invoke(app, [*board, "--out", str(tmp_path / "lb")])
    assert res.exit_code == 0, res.output
    assert f"HS and HS+ by judge tiny-moderation ({judge.version})" in res.output
    rows = {r["run"]: r for r in _csv(tmp_path / "lb.csv")}
    attacks = [r for r in list_runs(grid) if r.kind == "attack"]
    for run in attacks:
        sidecar = read_sidecar(run.path, judge.version)
        row = rows[str(run.path)]
        assert float(row["hs"]) == sidecar.hs.value and float(row["hs_plus"]) == sidecar.hs_plus.value
        assert float(row["refusal_harmful"]) == run.metrics["refusal_harmful"]["value"]  # the rest as recorded
    # the paired table pairs the new judge's flags, not the recorded ones
    sft, vaccine = sorted(attacks, key=lambda r: "vaccine" in str(r.path))
    d = compare_samples(judged_samples(vaccine, judge.version), judged_samples(sft, judge.version), "hs")
    assert f"({d.only_a}/{d.only_b}; p = {d.p_value:.2g}; MDE" in (tmp_path / "lb_vs_sft.md").read_text()
    assert (tmp_path / "lb.md").read_text().startswith(f"HS and HS+ by judge tiny-moderation ({judge.version})")

    default = CliRunner().invoke(app, ["leaderboard", "--runs", str(grid), "--formats", "html",
                                       "--out", str(tmp_path / "default")])
    assert default.exit_code == 0 and "HS and HS+ by judge" not in default.output  # metrics.json as recorded
    assert {r["run"]: r["hs"] for r in _csv(tmp_path / "default.csv")} == {
        str(r.path): f"{r.metrics['hs']['value']}" for r in attacks}


def test_leaderboard_reads_each_runs_own_judge_and_a_retrained_judge_needs_a_rescore(tmp_path):
    """The archived grid was scored by an earlier training of minilm-lr. Without --judge the leaderboard reads each
    run's metrics.json and the table is the committed one; the shipped minilm-lr is a retraining (another
    version), so `--judge minilm-lr` must not pass the old scores off as its own: it names the rescore command.
    Neither writes into the archive."""
    before = digests(GRID)
    res = CliRunner().invoke(app, ["leaderboard", "--runs", str(GRID), "--out", str(tmp_path / "lb"),
                                   "--formats", "html"])
    assert res.exit_code == 0, res.output
    assert (GOLDEN / "table.md").read_text() in res.output
    assert (tmp_path / "lb_vs_sft.md").read_text() == (GOLDEN / "vs_sft.md").read_text()
    assert (tmp_path / "lb.csv").read_text().replace(str(REPO) + "/", "") == (GOLDEN / "table.csv").read_text()
    retrained = CliRunner().invoke(app, ["leaderboard", "--runs", str(GRID), "--out", str(tmp_path / "lr"),
                                         "--formats", "html", "--judge", "minilm-lr"])
    assert retrained.exit_code == 2
    text = " ".join(retrained.output.split())
    assert f"no scores by judge minilm-lr ({get_judge('minilm-lr').version})" in text
    assert f"workbench judge rescore --runs {GRID} --judge minilm-lr" in text
    assert digests(GRID) == before


def _csv(path: Path) -> list[dict]:
    import csv

    with path.open() as f:
        return list(csv.DictReader(f))


# --- eval --judge on tiny-llama, then rescore ----------------------------------------------------------------------

def test_eval_with_a_folder_judge_records_it_and_rescoring_reproduces_it(classifier, tmp_path):
    judge = get_judge(classifier)
    out = tmp_path / "runs"
    base = ["eval", "--model", "tiny-llama", "--preset", "tiny", "--out", str(out)]
    res = CliRunner().invoke(app, [*base, "--judge", str(classifier)])
    assert res.exit_code == 0, res.output
    (judged,) = list_runs(out)
    assert judged.metrics["judge"] == {"name": "tiny-moderation", "version": judge.version,
                                       "spec": str(classifier.resolve())}
    assert judged.spec.eval.judge_model == str(classifier.resolve())
    harmful = [r for r in judged.samples() if r["set"] == "harmful"]
    assert len(harmful) == judged.metrics["hs"]["n"] == 8
    assert judged.metrics["hs"]["k"] == sum(r["harmful"] for r in harmful)

    res = CliRunner().invoke(app, base)  # the tiny preset's own judge: hashing-lr
    assert res.exit_code == 0, res.output
    plain = open_run(next(r.path for r in list_runs(out) if r.path != judged.path))
    assert plain.metrics["judge"]["name"] == "hashing-lr" and plain.spec.eval.judge_model is None

    outcomes = {o.run: o for o in rescore_runs([out], str(classifier), progress=False)}
    assert outcomes[judged.path].status == "in metrics.json"  # scored by this judge already: nothing written
    assert not (judged.path / "scores").exists()
    assert outcomes[plain.path].status == "scored"
    sidecar = read_sidecar(plain.path, judge.version)
    # same model, same greedy answers: the sidecar holds what `eval --judge` wrote
    assert [s.judge_score for s in sidecar.samples] == [r["judge_score"] for r in harmful]
    assert sidecar.rates() == {m: judged.metrics[m] for m in ("hs", "hs_plus")}


def test_rescore_and_judge_errors_are_one_line(tmp_path, classifier):
    res = CliRunner().invoke(app, ["judge", "rescore", "--runs", str(tmp_path / "absent"), "--judge", "minilm-lr"])
    assert res.exit_code == 2 and "no such folder" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["eval", "--model", "tiny-llama", "--judge", str(tmp_path / "nope"),
                                   "--out", str(tmp_path / "runs")])
    assert res.exit_code == 2 and "no such folder" in " ".join(res.output.split())
    assert not (tmp_path / "runs").exists() or not list_runs(tmp_path / "runs")
