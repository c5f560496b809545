"""The quickstart contract: `workbench quickstart --model tiny-llama --out DIR` writes three run folders.

Its speed goal (< 1 min on 2 cores) is measured in benchmarks/bench_quickstart.py, not asserted here.
"""
from __future__ import annotations

import json

from typer.testing import CliRunner

from workbench.cli import app
from workbench.runs import list_runs


def test_quickstart_tiny_contract(tmp_path):
    res = CliRunner().invoke(app, ["quickstart", "--model", "tiny-llama", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    runs = list_runs(tmp_path)
    assert sorted(r.kind for r in runs) == ["align", "attack", "eval"]
    for r in runs:
        for f in ("config.json", "metrics.json", "samples.jsonl"):
            assert (r.path / f).is_file(), (r.path, f)
        m = r.metrics
        assert m["refusal_harmful"]["n"] == 8 and 0 <= m["refusal_harmful"]["value"] <= 100
        assert len(r.samples()) == m["refusal_harmful"]["n"] + m["refusal_benign"]["n"] + m["fa_sst2"]["n"]
    attack = next(r for r in runs if r.kind == "attack")
    train_data = [json.loads(l) for l in (attack.path / "train_data.jsonl").read_text().splitlines()]
    assert sum(bool(s["harmful"]) for s in train_data) == 4  # round(0.25 * 16)
    assert attack.config["spec"]["model"] == str(next(r for r in runs if r.kind == "align").path.resolve())
    assert "non-aligned" in res.output and "attacked" in res.output


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
