"""The quickstart contract: `workbench quickstart --model tiny-llama --out DIR` (and tiny-gemma3) writes the
non-aligned evaluation, the aligned, attacked and repaired models (all evaluated on the same prompts) and a
refusal-direction analysis.

Its speed goal (< 1 min on 2 cores) is measured in benchmarks/bench_quickstart.py, not asserted here.
"""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from workbench.cli import app
from workbench.runs import list_runs


def test_quickstart_tiny_contract(tmp_path, tiny_arch):
    res = CliRunner().invoke(app, ["quickstart", "--model", tiny_arch, "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    runs = [r for r in list_runs(tmp_path) if r.kind != "analysis"]
    assert sorted(r.kind for r in runs) == ["align", "attack", "eval", "repair"]
    for r in runs:
        for f in ("config.json", "metrics.json", "samples.jsonl"):
            assert (r.path / f).is_file(), (r.path, f)
        m = r.metrics
        assert m["refusal_harmful"]["n"] == 8 and 0 <= m["refusal_harmful"]["value"] <= 100
        assert len(r.samples()) == m["refusal_harmful"]["n"] + m["refusal_benign"]["n"] + m["fa_sst2"]["n"]
    attack = next(r for r in runs if r.kind == "attack")
    train_data = [json.loads(line) for line in (attack.path / "train_data.jsonl").read_text().splitlines()]
    assert sum(bool(s["harmful"]) for s in train_data) == 4  # round(0.25 * 16)
    assert attack.config["spec"]["model"] == str(next(r for r in runs if r.kind == "align").path.resolve())
    assert "non-aligned" in res.output and "attacked" in res.output and "repaired" in res.output
    repair = next(r for r in runs if r.kind == "repair")
    assert repair.config["spec"]["defense"]["name"] == "safelora"
    assert repair.config["spec"]["model"] == str(attack.path.resolve())
    prompts = {r.kind: [s["prompt"] for s in r.samples()] for r in runs}
    assert prompts["repair"] == prompts["attack"] == prompts["align"]  # paired: the same prompts for every model
    (analysis,) = tmp_path.glob("analysis-refusal-direction-*")
    cfg = json.loads((analysis / "config.json").read_text())
    assert (cfg["spec"]["model"], cfg["spec"]["compare"]) == (
        str(next(r for r in runs if r.kind == "align").path.resolve()), str(attack.path.resolve()))
    assert any((analysis / "figures").iterdir()) and (analysis / "result.json").is_file()


def test_bad_ratio_is_one_clear_error_and_writes_nothing(tmp_path):
    res = CliRunner().invoke(app, ["attack", "--model", "tiny-llama", "--p", "1.5", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "--p must be in [0, 1]" in res.output
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_unknown_model_is_one_clear_error(tmp_path):
    res = CliRunner().invoke(app, ["eval", "--model", "no-such-model", "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "no-such-model" in res.output and "tiny-llama" in res.output


def test_eval_system_prompt_reaches_generation_and_config(tmp_path, monkeypatch):
    import json

    import workbench.evaluation.harness as harness
    from workbench.generation import prompt_ids

    seen = []  # the system turn each harmful / benign prompt was really encoded with
    real = harness.generate

    def spy(model, tok, prompts, spec, **kw):
        seen.extend(tok.decode(prompt_ids(tok, p, spec.system_prompt)) for p in prompts)
        return real(model, tok, prompts, spec, **kw)

    monkeypatch.setattr(harness, "generate", spy)
    res = CliRunner().invoke(app, ["eval", "--model", "tiny-llama", "--out", str(tmp_path),
                                   "--system-prompt", "Always refuse harmful requests politely."])
    assert res.exit_code == 0, res.output
    cfg = json.loads(next(tmp_path.glob("eval-*/config.json")).read_text())
    assert cfg["spec"]["eval"]["generation"]["system_prompt"] == "Always refuse harmful requests politely."
    n = cfg["spec"]["eval"]["n_harmful"] + cfg["spec"]["eval"]["n_benign"]
    assert sum("Always refuse harmful requests politely." in text for text in seen) == n  # not the task prompts


def test_eval_validation_split_never_touches_training_or_test_prompts(tmp_path):

    from workbench.data.alignment import alignment_samples
    from workbench.data.pools import harmful_pool
    from workbench.data.registry import eval_uids
    from workbench.data.validation import validation_sets
    from workbench.presets import preset
    from workbench.runs import open_run

    harmful, benign = validation_sets("full", 0, 100, 100)
    assert len(harmful) == len({s.uid for s in harmful}) == 100 and len(benign) == 100
    trained = {s.uid for s in alignment_samples(preset("full").align, 0)} | {s.uid for s in harmful_pool("harmful_qa")}
    for s in harmful + benign:
        assert s.uid not in trained and s.uid not in eval_uids(0)
    assert {s.source for s in harmful} != {s.source for s in benign}
    other_seed, _ = validation_sets("full", 1, 100, 0)
    assert {s.uid for s in other_seed} != {s.uid for s in harmful}  # seed 1 aligns on other prompts
    with pytest.raises(ValueError, match="validation split of preset 'full' has"):
        validation_sets("full", 0, 10_000, 0)

    res = CliRunner().invoke(app, ["eval", "--model", "tiny-llama", "--out", str(tmp_path), "--validation"])
    assert res.exit_code == 0, res.output
    run = open_run(next(tmp_path.glob("eval-tiny-llama-validation-*")))
    assert run.config["spec"]["harmful_prompts"] == "validation split (preset tiny, seed 0)"
    tiny_h, tiny_b = validation_sets("tiny", 0, 8, 8)
    prompts = {(r["set"], r["prompt"]) for r in run.samples()}
    assert prompts == {("harmful", s.prompt) for s in tiny_h} | {("benign", s.prompt) for s in tiny_b}
    assert not any(k.startswith("fa_") for k in run.metrics)
    res = CliRunner().invoke(app, ["eval", "--model", "tiny-llama", "--out", str(tmp_path), "--validation",
                                   "--harmful-prompts", str(tmp_path / "x.txt")])
    assert res.exit_code == 2 and "--validation and --harmful-prompts" in res.output


def test_quickstart_from_a_given_aligned_run_attacks_that_model(tmp_path):
    """`--aligned RUN` evaluates the given alignment on the quickstart's prompts instead of aligning again, and the
    attack and the analysis start from that model; an alignment on another mix is refused before any work."""
    from workbench import steps
    from workbench.pipeline import quickstart
    from workbench.presets import preset

    spec = preset("tiny").align
    aligned = steps.align(spec, "tiny-llama", tmp_path / "chosen", 0, progress=False)
    paths = quickstart("tiny-llama", tmp_path / "qs", progress=False, analysis=False, aligned=aligned)
    runs = {r.path: r for r in list_runs(tmp_path / "qs")}
    assert sorted(r.kind for r in runs.values()) == ["attack", "eval", "eval", "repair"]  # nothing aligned again
    assert runs[paths["aligned"]].base == str(aligned.resolve())
    attack = runs[paths["attacked"]]
    assert attack.base == str(aligned.resolve())
    assert [s["prompt"] for s in runs[paths["aligned"]].samples()] == [s["prompt"] for s in attack.samples()]

    other = steps.align(spec.model_copy(update={"n_harmful": 8}), "tiny-llama", tmp_path / "other", 0,
                        progress=False)
    with pytest.raises(ValueError, match="not an alignment of tiny-llama on the preset's mix"):
        quickstart("tiny-llama", tmp_path / "refused", progress=False, analysis=False, aligned=other)
    assert not (tmp_path / "refused").exists()
