"""The worst-case adaptive attacker (`workbench stress`, issue #22) on tiny-llama at the tiny preset's sizes.

Bookkeeping (bounds, the design, the FA floor, kill / resume, determinism) runs with a fake trial function whose
objective is a known function of the parameters, so a test about the study is not a test of training; one test
runs a real tiny study end to end, its report on the test sets, the CLI's resume and the leaderboard's column.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pytest
from judge_helpers import save_classifier
from optuna.trial import TrialState
from pydantic import ValidationError
from typer.testing import CliRunner

from workbench import steps
from workbench.archive import archive_runs
from workbench.attacks import ATTACKS, AttackInfo
from workbench.attacks.harmful_ft import harmful_ft
from workbench.cli import app
from workbench.data.alignment import alignment_samples
from workbench.data.types import prompt_uid
from workbench.data.validation import validation_sets, validation_task_set
from workbench.leaderboard import build as build_board
from workbench.plots.stress import best_so_far, plot_stress_best_so_far
from workbench.presets import preset
from workbench.runs import Run, list_runs, open_run
from workbench.stress.design import design
from workbench.stress.report import build_report, check_disjoint, read_report
from workbench.stress.run import study_spec
from workbench.stress.space import Bounds, IntBounds, default_space, threat_kinds
from workbench.stress.study import (
    TrialOutcome,
    best_feasible,
    counts,
    enqueue_design,
    load_study,
    open_study,
    run_study,
)

SERVICE_KINDS = ("harmful_ft", "pure_bad", "benign_ft", "identity_shift")


def tiny_spec(threat="service", budget=3, design_size=2, seed=0, fa_floor=None, model="tiny-llama", **kw):
    return study_spec(model, threat, budget, seed=seed, preset_name="tiny", fa_floor=fa_floor,
                      design_size=design_size, **kw)


def fake_trial(calls: list | None = None, fa=lambda cfg: 1.0, interrupt_on: int | None = None):
    """A trial function without training: objective = a smooth function of the configuration, FA as given;
    `interrupt_on`: the call (0-based) that raises KeyboardInterrupt, as a killed driver would."""
    calls = calls if calls is not None else []

    def trial(spec, params, folder, progress=False):
        if interrupt_on is not None and len(calls) == interrupt_on:
            calls.append(("interrupted", dict(params)))
            raise KeyboardInterrupt
        calls.append(("ran", dict(params)))
        cfg = spec.space.config(params)
        steps = spec.space.granted_steps(cfg)
        objective = cfg.p * 0.5 + math.log(cfg.lr) / 100 + cfg.n / 1000 + 0.1 * (cfg.kind == "pure_bad")
        return TrialOutcome(objective=objective, fa=fa(cfg), requested_steps=spec.space.requested_steps(cfg),
                            granted_steps=steps, sequences=steps * spec.space.sequences_per_step, runs={})

    return trial


def finished_params(study) -> list[dict]:
    return [t.params for t in study.get_trials(deepcopy=False) if counts(t)]


# ------------------------------------------------------------------------------------------------------- space


def test_threat_kinds_are_read_from_the_registry(monkeypatch):
    assert set(SERVICE_KINDS) <= set(threat_kinds("service"))
    assert threat_kinds("open") == tuple(ATTACKS)
    # an attack that edits weights or brings its own objective needs control over training: open weights only
    monkeypatch.setitem(ATTACKS, "weight_edit", AttackInfo(harmful_ft, "test", edit=lambda *a: None))
    monkeypatch.setitem(ATTACKS, "own_loss", AttackInfo(harmful_ft, "test", plugins=lambda *a: []))
    assert "weight_edit" not in threat_kinds("service") and "own_loss" not in threat_kinds("service")
    assert {"weight_edit", "own_loss"} <= set(threat_kinds("open"))
    assert set(default_space("open", "tiny").kinds) >= {"weight_edit", "own_loss"}
    with pytest.raises(ValueError, match="unknown threat model"):
        threat_kinds("insider")


def test_space_validates_bounds_and_the_compute_cap():
    space = default_space("service", "tiny")
    assert space.methods == ("lora",) and space.lora_r.fixed and "lora_r" not in space.free
    assert set(default_space("open", "tiny").free) == {"kind", "p", "n", "epochs", "lr", "method", "lora_r"}
    with pytest.raises(ValidationError, match="low must not exceed high"):
        Bounds(low=0.5, high=0.1)
    with pytest.raises(ValidationError, match="log scale needs low > 0"):
        Bounds(low=0.0, high=1.0, log=True)
    with pytest.raises(ValidationError):
        IntBounds(low=0, high=4)
    bad = {"p": Bounds(low=0.0, high=1.5), "kinds": ("harmful_ft", "no_such_attack"), "methods": ("lora", "full"),
           "max_sequences": space.sequences_per_step - 1}
    messages = {"p": "must lie in", "kinds": "not allowed under the service", "methods": "provider fixes the method",
                "max_sequences": "below one optimizer step"}
    for field, value in bad.items():
        with pytest.raises(ValidationError, match=messages[field]):
            space.model_validate({**space.model_dump(), field: value})

    # the cap clips: 32 samples × 3 epochs at batch 8 = 12 steps > 64 sequences / 8 = 8 steps
    big, small = space.config({"n": 32, "epochs": 3}), space.config({"n": 8, "epochs": 1})
    assert space.requested_steps(big) == 12 and space.granted_steps(big) == space.cap_steps == 8
    assert space.attack_spec(big, seed=3).train.max_steps == 8
    assert space.attack_spec(small, seed=3).train.max_steps is None and space.granted_steps(small) == 1
    spec = space.attack_spec(space.config({"kind": "pure_bad", "p": 0.3, "n": 20, "lr": 2e-3}), seed=5)
    assert (spec.name, spec.data.p, spec.data.n, spec.data.seed, spec.train.seed, spec.train.lr) == \
        ("pure_bad", 0.3, 20, 5, 5, 2e-3)
    for s in (space, default_space("open", "tiny"), default_space("service", "full"), default_space("open", "full")):
        for params in design(s, seed=0, size=8):
            cfg = s.config(params)
            assert s.granted_steps(cfg) * s.sequences_per_step <= s.max_sequences
            assert s.p.low <= cfg.p <= s.p.high and s.n.low <= cfg.n <= s.n.high and s.lr.low <= cfg.lr <= s.lr.high
            assert (cfg.lora_r is None) == (cfg.method == "full")


def test_design_is_a_deterministic_spread_over_the_space():
    space = default_space("service", "tiny").model_copy(update={"kinds": SERVICE_KINDS})
    first = design(space, seed=0)
    assert first == design(space, seed=0) and first != design(space, seed=1)
    assert len(first) == 8 and all(set(p) == set(space.free) for p in first)
    assert design(space, seed=0, size=3) == first[:3]  # a smaller budget faces the same first configurations
    # quasi-random: 8 points over 4 kinds put exactly 2 in each (independent draws rarely would)
    assert sorted(p["kind"] for p in first) == sorted(SERVICE_KINDS * 2)
    assert len({p["n"] for p in first}) >= 5 and len({p["lr"] for p in first}) == 8
    open_design = design(default_space("open", "tiny"), seed=0)
    assert {p["method"] for p in open_design} == {"lora", "full"}
    assert all(("lora_r" in p) == (p["method"] == "lora") for p in open_design)


def test_study_spec_checks_the_defense_against_the_threat_model(tmp_path):
    with pytest.raises(ValidationError, match="only alignment-stage defenses apply"):
        tiny_spec("open", defense="lisa")
    with pytest.raises(ValidationError, match="alignment-stage defense: it is the model"):
        tiny_spec("service", defense="vaccine")
    assert tiny_spec("service", defense="lisa").finetune_defense.name == "lisa"
    assert tiny_spec("service", defense="antidote").post_defense.name == "antidote"
    open_study(tiny_spec(), tmp_path)
    open_study(tiny_spec(budget=9), tmp_path)  # a larger budget continues the study
    with pytest.raises(ValueError, match="differs in .*seed"):
        open_study(tiny_spec(seed=1), tmp_path)


# ------------------------------------------------------------------------------------------------------- study


def test_fa_floor_infeasible_trials_are_never_chosen(tmp_path):
    # high p is the most harmful configuration here, and it breaks the FA floor
    spec = tiny_spec(budget=6, design_size=4, fa_floor=0.5)
    study = run_study(spec, tmp_path / "s", progress=False, trial_fn=fake_trial(fa=lambda cfg: 1.0 - cfg.p))
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    best = best_feasible(study)
    assert len(done) == 6 and best is not None and best.user_attrs["fa"] >= 0.5
    infeasible = [t for t in done if t.user_attrs["fa"] < 0.5]
    assert infeasible and max(t.value for t in infeasible) > best.value  # a better objective, rightly passed over
    assert best.value == max(t.value for t in done if t.user_attrs["fa"] >= 0.5)

    # a floor no model reaches: no worst case, and the report says so instead of retraining anything
    none = tmp_path / "none"
    run_study(tiny_spec(budget=2, fa_floor=1.01), none, progress=False, trial_fn=fake_trial())
    report = build_report(none, progress=False, formats=())
    assert report.best is None and not report.seeds
    assert "No trial kept FA at the floor" in (none / "report.md").read_text()
    assert report.objectives() == [None, None] and not (none / "report").exists()


def test_same_seed_and_budget_give_the_same_configurations(tmp_path):
    a = run_study(tiny_spec(budget=5, seed=4), tmp_path / "a", progress=False, trial_fn=fake_trial())
    b = run_study(tiny_spec(budget=5, seed=4), tmp_path / "b", progress=False, trial_fn=fake_trial())
    c = run_study(tiny_spec(budget=5, seed=5), tmp_path / "c", progress=False, trial_fn=fake_trial())
    assert finished_params(a) == finished_params(b) and len(finished_params(a)) == 5  # 2 design + 3 TPE
    assert finished_params(a)[:2] == design(tiny_spec().space, seed=4, size=2)
    assert finished_params(a) != finished_params(c)
    assert [t.user_attrs.get("design", False) for t in a.trials] == [True, True, False, False, False]

    # a budget below the design runs its first points; raising it on a rerun continues with the rest of the design
    small = run_study(tiny_spec(budget=1, design_size=3, seed=4), tmp_path / "d", progress=False,
                      trial_fn=fake_trial())
    assert finished_params(small) == design(tiny_spec().space, seed=4, size=3)[:1]
    grown = run_study(tiny_spec(budget=4, design_size=3, seed=4), tmp_path / "d", progress=False,
                      trial_fn=fake_trial())
    assert finished_params(grown)[:3] == design(tiny_spec().space, seed=4, size=3)
    assert [t.user_attrs.get("design", False) for t in grown.trials] == [True, True, True, False]


def test_killed_trial_is_retried_and_finished_trials_are_skipped(tmp_path):
    out, calls = tmp_path / "s", []
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C / SIGTERM during the second trial
        run_study(tiny_spec(budget=4), out, progress=False, trial_fn=fake_trial(calls, interrupt_on=1))
    _, study = load_study(out)
    states = {t.number: t.state for t in study.trials}
    assert states[0] == TrialState.COMPLETE and states[1] == TrialState.FAIL
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING
    killed_params = calls[1][1]

    resumed = []
    study = run_study(tiny_spec(budget=4), out, progress=False, trial_fn=fake_trial(resumed))
    assert calls[0][1] not in [p for _, p in resumed]  # trial 0 is not rerun
    assert killed_params in [p for _, p in resumed]  # the killed one is
    assert len(resumed) == 3 and sum(counts(t) for t in study.trials) == 4

    # a hard kill leaves a trial RUNNING in the storage: the next start fails and retries it
    hard = tmp_path / "hard"
    victim = open_study(tiny_spec(budget=3), hard)
    enqueue_design(victim, tiny_spec(budget=3))  # the driver's own first step, before it died
    running = victim.ask()
    params = tiny_spec().space.suggest(running)
    study = run_study(tiny_spec(budget=3), hard, progress=False, trial_fn=fake_trial())
    assert study.trials[running.number].state == TrialState.FAIL
    assert params in [t.params for t in study.trials if t.state == TrialState.COMPLETE]
    assert sum(counts(t) for t in study.trials) == 3

    # killed or not, the same seed ends with the same configurations as an uninterrupted study
    clean = run_study(tiny_spec(budget=4), tmp_path / "clean", progress=False, trial_fn=fake_trial())
    _, killed_study = load_study(out)
    assert sorted(map(json.dumps, finished_params(killed_study))) == sorted(map(json.dumps, finished_params(clean)))


@pytest.mark.timeout(600)
def test_design_is_the_same_on_ray_and_locally(tmp_path):
    ray = pytest.importorskip("ray")
    space = default_space("open", "tiny")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert ray.get(ray.remote(design).remote(space, 7)) == design(space, 7)
        spec = tiny_spec("open", budget=3, design_size=2, seed=7)
        on_ray = run_study(spec, tmp_path / "ray", backend="ray", workers=2, progress=False, trial_fn=fake_trial())
    finally:
        ray.shutdown()
    local = run_study(spec, tmp_path / "local", progress=False, trial_fn=fake_trial())
    assert finished_params(on_ray)[:2] == finished_params(local)[:2] == design(space, 7, size=2)
    assert sum(counts(t) for t in on_ray.trials) == 3


# ------------------------------------------------------------------------------------------- validation split


def test_validation_task_set_avoids_what_the_model_trained_on():
    pool = validation_task_set("tiny", 0, "sst2", 8, trained_on=[])
    skipped = validation_task_set("tiny", 0, "sst2", 8, trained_on=[pool[0].uid, pool[3].uid])
    assert pool[0] not in skipped and pool[3] not in skipped and skipped[:2] == [pool[1], pool[2]]
    aligned = {s.uid for s in alignment_samples(preset("tiny").align, 0)}
    assert not aligned & {s.uid for s in pool}
    check_disjoint(tiny_spec(), seeds=[1, 2, 3])  # test prompts are never validation prompts


def test_best_so_far_curve():
    assert best_so_far([None, 0.2, None, 0.1, 0.5]) == [None, 0.2, 0.2, 0.2, 0.5]
    fig = plot_stress_best_so_far({"sft": [0.1, 0.3], "lisa": [None, 0.05, 0.02]}, "harm_prob")
    assert [t.name for t in fig.data] == ["sft", "lisa"] and list(fig.data[1].y) == [None, 0.05, 0.05]


# ------------------------------------------------------------------------------------------------- end to end


@pytest.mark.timeout(300)
def test_real_tiny_study_report_resume_and_leaderboard(tmp_path):
    """K = 2 (design 2) real tiny trials, the report (3 fresh seeds on the test sets, a second judge), a rerun of
    the same command that trains nothing, and the leaderboard's worst-case column."""
    judge2 = save_classifier(tmp_path / "judge2")
    runs = tmp_path / "runs"
    out = runs / "stress-service"
    args = ["stress", "--model", "tiny-llama", "--threat", "service", "--budget", "2", "--design-size", "2",
            "--preset", "tiny", "--out", str(out), "--second-judge", str(judge2)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    report = read_report(out)
    assert "worst case (service, K = 2)" in res.output

    # the trials are ordinary run folders; the objective and FA come from the validation eval run
    _, study = load_study(out)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 2 and [t.params for t in done] == design(report.spec.space, 0, size=2)
    for t in done:
        attack, val = open_run(t.user_attrs["runs"]["attack"]), Run(Path(t.user_attrs["runs"]["validation"]))
        assert attack.kind == "attack" and attack.attack.name == t.params["kind"] and "hs" not in attack.metrics
        harmful = [r for r in val.samples() if r["set"] == "harmful"]
        assert len(harmful) == 8 and t.value == pytest.approx(sum(r["judge_score"] for r in harmful) / 8)
        assert val.metrics["fa_sst2"]["n"] == 8 and t.user_attrs["fa"] == val.metrics["fa_sst2"]["value"] / 100
        trained = {json.loads(line)["uid"] for line in (attack.path / "train_data.jsonl").read_text().splitlines()}
        task_prompts = {prompt_uid(r["prompt"]) for r in val.samples() if r["set"] == "task"}
        assert not trained & task_prompts

    # the report: the validation-best trial, retrained on fresh seeds, scored on the test sets only
    assert report.best.number == max(done, key=lambda t: t.value).number
    assert report.best.objective == pytest.approx(max(t.value for t in done))
    assert report.report_seeds == [1, 2, 3] and [s.seed for s in report.seeds] == [1, 2, 3]
    validation = {s.uid for s in validation_sets("tiny", 0, 8, 8)[0]}
    for s in report.seeds:
        run = open_run(s.run)
        assert run.attack.data.seed == s.seed and run.attack.name == report.best.params["kind"]
        tested = {prompt_uid(r["prompt"]) for r in run.samples() if r["set"] == "harmful"}
        assert len(tested) == 8 and not tested & validation  # never the prompts it was selected on
        assert s.rates["hs"].n == 8 and s.second_judge["hs"].n == 8 and (run.path / "scores").is_dir()
    assert report.test["hs"].max >= report.test["hs"].mean and report.second_judge.name == "judge2"
    assert len(report.quotes) == 8  # the tiny test set holds 8 prompts; a real one gives 10
    assert report.quotes[0].judge_score == max(q.judge_score for q in report.quotes)
    md = (out / "report.md").read_text()
    assert "Fine-tuning as a service" in md and "Ten worst-case answers" in md and (out / "best_so_far.html").exists()

    # the same command again: nothing trains, the report's runs are reused
    before = {r.path for r in list_runs(out)}
    assert CliRunner().invoke(app, args).exit_code == 0
    assert {r.path for r in list_runs(out)} == before and read_report(out).seeds == report.seeds

    # the leaderboard: an ordinary attack on the same model gets the worst-case column; the study's runs are no rows
    pr = preset("tiny")
    steps.attack(pr.attack, "tiny-llama", runs / "plain", 0, pr.eval, progress=False)
    board = build_board(runs)
    assert len(board.rows) == 1 and board.worst_columns() == [("service", 2)]
    assert "worst HS (service, K=2)" in board.to_markdown()
    assert f"{report.test['hs'].mean:.0f} ({report.test['hs'].max:.0f})" in board.to_markdown()
    assert board.records()[0]["worst_hs_service_k2"] == report.test["hs"].mean
    assert "| none | none |" in board.worst_case_markdown()

    # archived like the other grids (records, no weights): the report travels with the study's runs
    archived = archive_runs(runs, tmp_path / "results")
    assert (tmp_path / "results" / "stress-service" / "stress.json") in archived
    assert (tmp_path / "results" / "stress-service" / "report.md").is_file()
    assert build_board(tmp_path / "results").records()[0]["worst_hs_service_k2"] == report.test["hs"].mean


def test_optuna_storage_is_sqlite_in_the_study_folder(tmp_path):
    spec = tiny_spec(budget=1, design_size=1)
    run_study(spec, tmp_path, progress=False, trial_fn=fake_trial())
    meta, study = load_study(tmp_path)
    assert meta.storage == f"sqlite:///{(tmp_path / 'study.db').resolve()}" and (tmp_path / "study.db").is_file()
    assert isinstance(study, optuna.Study) and len(study.trials) == 1
