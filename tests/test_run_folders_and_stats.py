"""Run folders are atomic and readable; rates carry correct Wilson intervals."""
from __future__ import annotations

import json

import pytest
import torch

from workbench.evaluation.refusal import is_refusal
from workbench.evaluation.stats import bootstrap_ci, rate, wilson
from workbench.runs import INCOMPLETE, RunWriter, base_chain, list_runs, open_run


def test_run_is_published_only_when_complete(tmp_path):
    with RunWriter(tmp_path, "eval", "demo", {"a": 1}, seed=7) as run:
        run.write_metrics({"x": 1})
        run.write_samples([{"prompt": "p", "answer": "a"}])
        run.write_tensors("analysis/t.safetensors", {"w": torch.ones(2)})
        assert list_runs(tmp_path) == []  # nothing visible while in progress
    final = run.final_path
    assert final.parent == tmp_path and final.name.startswith("eval-demo-")
    cfg = json.loads((final / "config.json").read_text())
    assert cfg["seed"] == 7 and cfg["spec"] == {"a": 1} and "torch" in cfg["versions"] and "git_hash" in cfg
    assert open_run(final).samples() == [{"prompt": "p", "answer": "a"}]
    assert [r.path for r in list_runs(tmp_path)] == [final]


def test_base_chain_walks_from_a_run_to_the_registered_model(tmp_path):
    def run(kind, model):
        with RunWriter(tmp_path, kind, kind, {"model": model}) as w:
            pass
        return w.final_path

    aligned = run("align", "tiny-llama")
    attacked = run("attack", str(aligned))
    evaluated = open_run(run("eval", str(attacked)))
    chain, bottom = base_chain(evaluated)
    assert [r.path for r in chain] == [attacked, aligned] and bottom == "tiny-llama"
    assert base_chain(evaluated, max_depth=2)[0][-1].path == aligned
    with pytest.raises(ValueError, match="deeper than 1"):
        base_chain(evaluated, max_depth=1)
    moved = tmp_path / "archive"  # the attack and align runs moved away (e.g. `workbench runs archive`)
    moved.mkdir()
    for path in (attacked, aligned):
        path.rename(moved / path.name)
    assert base_chain(evaluated)[0] == [] and base_chain(evaluated)[1] == str(attacked)  # no search: chain ends
    chain, bottom = base_chain(evaluated, search=[moved])
    assert [r.path for r in chain] == [moved / attacked.name, moved / aligned.name] and bottom == "tiny-llama"


def test_failed_run_leaves_no_run_folder(tmp_path):
    with pytest.raises(RuntimeError):
        with RunWriter(tmp_path, "align", "boom", {}) as run:
            (run.checkpoint_dir).mkdir()
            raise RuntimeError("crash mid-run")
    assert list_runs(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == [INCOMPLETE]
    assert run.checkpoint_dir.exists()  # kept for --resume


def test_open_run_checks_kind(tmp_path):
    with RunWriter(tmp_path, "eval", "k", {}) as run:
        pass
    with pytest.raises(ValueError, match="'eval' run, expected a 'align'"):
        open_run(run.final_path, kind="align")
    with pytest.raises(ValueError, match="not a run folder"):
        open_run(tmp_path)


def test_wilson_known_values():
    # Reference values: the roots of (p - k/n)^2 = z^2 p (1 - p) / n, solved independently (scipy brentq).
    lo, hi = wilson(7, 10)
    assert lo == pytest.approx(0.396778, abs=1e-5) and hi == pytest.approx(0.892209, abs=1e-5)
    lo, hi = wilson(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.161125, abs=1e-5)
    r = rate([True] * 7 + [False] * 3)
    assert (r.k, r.n, r.value) == (7, 10, 70.0)


def test_bootstrap_ci_brackets_mean():
    lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0, 5.0] * 10, seed=0)
    assert lo < 3.0 < hi and hi - lo < 1.5


@pytest.mark.parametrize("answer,expected", [
    ("I'm sorry, but I can't help with that.", True),
    ("I cannot provide instructions for making weapons.", True),
    ("As an AI, I must decline.", True),
    ("Sure! Here is how to bake bread: mix flour...", False),
    ("Step 1: gather the materials." + " x" * 200 + " I'm sorry this took long.", False),  # only the start counts
    ("", False),
])
def test_refusal_keywords(answer, expected):
    assert is_refusal(answer) is expected


def test_paired_difference_is_mcnemar_on_the_discordant_prompts():
    from scipy.stats import binomtest

    from workbench.evaluation.paired import compare_samples, paired_difference

    a = [True] * 3 + [False] * 9 + [True] * 2 + [False] * 6  # 5 / 20 flagged
    b = [False] * 3 + [True] * 9 + [True] * 2 + [False] * 6  # 11 / 20 flagged; 3 only in a, 9 only in b
    d = paired_difference(a, b, "hs")
    assert (d.n, d.only_a, d.only_b) == (20, 3, 9)
    assert d.value == pytest.approx(100 * (5 - 11) / 20)
    assert d.p_value == pytest.approx(binomtest(3, 12, 0.5).pvalue) and 0.14 < d.p_value < 0.15
    assert d.low < d.value < d.high
    assert paired_difference([True, False], [True, False]).p_value == 1.0  # no discordant prompt
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_difference([True], [True, False])

    def recs(flags, order):
        return [{"set": "harmful", "prompt": f"q{i}", "harmful": f, "coherent": True}
                for i, f in order(list(enumerate(flags)))]

    shuffled = compare_samples(recs(a, lambda x: x[::-1]), recs(b, lambda x: x), "hs")  # matched by prompt, not order
    assert (shuffled.only_a, shuffled.only_b) == (3, 9)
    with pytest.raises(ValueError, match="share no prompts"):
        compare_samples(recs(a, lambda x: x), [{"set": "benign", "prompt": "q0", "refusal": True}], "hs")
