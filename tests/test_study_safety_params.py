"""The safety-params study (#25, question 1): each criterion against a hand computation on tiny-llama, the nested
top-k bookkeeping, Jaccard and the SafeLoRA subspace share on hand-made masks, the run folder read back typed, the
act step's runs, and the CLI's input errors."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from workbench.analysis.safety_metric import batches_of, calibration_samples
from workbench.analysis.wanda import set_difference, top_fraction
from workbench.cli import app
from workbench.models import load_model
from workbench.studies.safety_params_criteria import CRITERIA, CriterionInputs, linear_weights, setdiff_scores
from workbench.studies.safety_params_masks import (
    NONE,
    jaccard,
    layer_shares,
    levels,
    mask_at,
    subspace_bases,
    subspace_share,
    top_layers,
    top_masks,
)
from workbench.training.plugins import lm_loss

DOWN = "model.layers.1.mlp.down_proj"
Q = "model.layers.2.self_attn.q_proj"


@pytest.fixture(scope="module")
def inputs(tiny_model_dir, other_tiny_dir):
    """Criterion inputs on a private tiny-llama: two refusal batches, two utility batches; the seed-1 tiny-llama
    plays the base model, so delta = |W_seed0 − W_seed1|."""
    model, tok = load_model(tiny_model_dir)
    safety = batches_of(tok, calibration_samples("refusal", 4, 0), 64, 2)
    utility = batches_of(tok, calibration_samples("utility", 4, 0), 64, 2)
    base, _ = load_model(other_tiny_dir)
    return CriterionInputs(model=model, safety=safety, utility=utility, refusal=safety, seed=3, p=0.05,
                           pq_grid=(0.02, 0.2), pq_k=5.0, aligned=linear_weights(model), base=linear_weights(base))


def _weight(model, name):
    return dict(model.named_modules())[name].weight


def test_wanda_is_abs_weight_times_input_norm_by_hand(inputs):
    model, rows = inputs.model, []
    module = dict(model.named_modules())[DOWN]
    current = {}
    handle = module.register_forward_pre_hook(lambda m, args: rows.append(args[0][current["mask"]].detach()))
    try:
        with torch.no_grad():
            for b in inputs.safety:
                current["mask"] = b["attention_mask"].bool()
                model(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
    finally:
        handle.remove()
    x = torch.cat(rows).double()  # [tokens, d_in]: every non-pad token of both batches
    expected = module.weight.detach().abs() * x.square().sum(0).sqrt().float()[None, :]
    got = CRITERIA["wanda"](inputs)[f"{DOWN}.weight"]
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-7)


def _grads(inputs, name, batches):
    model = inputs.model
    w = _weight(model, name)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    model.requires_grad_(False)
    w.requires_grad_(True)
    try:
        return [torch.autograd.grad(lm_loss(model, b)[0], [w])[0] for b in batches], w.detach()
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])


def test_grad_and_snip_are_summed_gradient_magnitudes_by_hand(inputs):
    grads, w = _grads(inputs, Q, inputs.refusal)
    assert len(grads) == 2
    assert torch.allclose(CRITERIA["grad"](inputs)[f"{Q}.weight"], sum(g.abs() for g in grads), atol=1e-7)
    assert torch.allclose(CRITERIA["snip"](inputs)[f"{Q}.weight"], sum((w * g).abs() for g in grads), atol=1e-7)


def test_delta_is_the_alignment_update_and_needs_a_base(inputs):
    scores = CRITERIA["delta"](inputs)
    name = f"{Q}.weight"
    assert torch.equal(scores[name], (inputs.aligned[name] - inputs.base[name]).abs())
    assert set(scores) == set(CRITERIA["wanda"](inputs)) and len(scores) == 4 * 7
    lone = CriterionInputs(model=inputs.model, safety=[], utility=[], refusal=[])
    with pytest.raises(ValueError, match="--base"):
        CRITERIA["delta"](lone)


def test_random_is_deterministic_per_seed(inputs):
    a, b = CRITERIA["random"](inputs), CRITERIA["random"](inputs)
    other = CRITERIA["random"](CriterionInputs(model=inputs.model, safety=[], utility=[], refusal=[], seed=4))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a[f"{Q}.weight"], other[f"{Q}.weight"])


def test_setdiff_top_k_is_top_q_safety_minus_top_p_utility(inputs):
    safety, utility = inputs.score("wanda", "safety"), inputs.score("wanda", "utility")
    scores = CRITERIA["wanda_setdiff"](inputs)
    assert all(torch.equal(scores[n], setdiff_scores(safety, utility, 0.05)[n]) for n in scores)
    (mask,) = top_masks(scores, [3.0])
    for n, m in mask.items():
        excluded = top_fraction(utility[n], 0.05)
        assert not (m & excluded).any(), n  # never a top-p utility weight
        # exactly top-q(safety) \ top-p(utility) for the q whose difference holds 3 % of the matrix
        count = int(m.sum())
        assert count == round(0.03 * m.numel())
        q = next(j / m.numel() for j in range(count, m.numel() + 1)
                 if int(set_difference({n: safety[n]}, {n: utility[n]}, j / m.numel(), 0.05)[n].sum()) >= count)
        assert torch.equal(m, set_difference({n: safety[n]}, {n: utility[n]}, q, 0.05)[n]), n


def test_pq_chooses_the_p_with_the_largest_calibration_gain(inputs):
    scores = CRITERIA["pq"](inputs)
    table = inputs.pq_table
    assert [r["p"] for r in table] == [0.02, 0.2] and sum(r["chosen"] for r in table) == 1
    best = max(table, key=lambda r: r["gain"])
    assert best["chosen"] and best["gain"] == pytest.approx(best["refusal_nll_rise"] - best["utility_nll_rise"])
    expected = setdiff_scores(inputs.score("wanda", "safety"), inputs.score("wanda", "utility"), best["p"])
    assert all(torch.equal(scores[n], expected[n]) for n in scores)
    # the trial prunings were undone exactly
    assert all(torch.equal(_weight(inputs.model, n.removesuffix(".weight")).detach(), w)
               for n, w in inputs.aligned.items())


# --------------------------------------------------------------------------------------------- masks


def test_levels_nest_and_count_per_matrix_and_globally():
    gen = torch.Generator().manual_seed(0)
    scores = {"model.layers.0.self_attn.q_proj.weight": torch.rand(8, 10, generator=gen),
              "model.layers.1.mlp.up_proj.weight": torch.zeros(5, 4)}  # all ties
    ks = [5.0, 10.0, 50.0]
    for group in ("matrix", "global"):
        masks = top_masks(scores, ks, group)
        for small, large in zip(masks, masks[1:], strict=False):
            assert all(not (small[n] & ~large[n]).any() for n in scores)  # a superset as k grows
        total = sum(s.numel() for s in scores.values())
        counts = [sum(int(m.sum()) for m in mk.values()) for mk in masks]
        if group == "matrix":
            assert counts == [sum(round(k / 100 * s.numel()) for s in scores.values()) for k in ks]
        else:
            assert counts == [round(k / 100 * total) for k in ks]
    lv = levels(scores, ks)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(mask_at(lv, 0)[q], top_fraction(scores[q], 0.05))  # no ties: as topk would pick
    assert int((lv[q] == NONE).sum()) == 80 - 40
    with pytest.raises(ValueError, match="ascending"):
        levels(scores, [2.0, 1.0])


def test_jaccard_and_layer_shares_on_hand_made_masks():
    a = {"model.layers.0.self_attn.q_proj.weight": torch.tensor([[True, True], [False, False]]),
         "model.layers.1.self_attn.q_proj.weight": torch.tensor([[True, False], [False, False]])}
    b = {"model.layers.0.self_attn.q_proj.weight": torch.tensor([[True, False], [True, False]]),
         "model.layers.1.self_attn.q_proj.weight": torch.tensor([[False, False], [False, False]])}
    overall, per = jaccard(a, a, [0, 1], ["q_proj"])
    assert overall == 1.0 and per.tolist() == [[1.0], [1.0]]
    overall, per = jaccard(a, b, [0, 1], ["q_proj"])
    assert overall == pytest.approx(1 / 4) and per[0, 0] == pytest.approx(1 / 3) and per[1, 0] == 0.0
    assert layer_shares(a, [0, 1]).tolist() == pytest.approx([2 / 3, 1 / 3])
    assert top_layers(a, [0, 1], 1) == [0]


def test_subspace_share_is_one_inside_span_v_and_zero_orthogonal_to_it():
    name = "model.layers.0.self_attn.o_proj.weight"
    base = {name: torch.zeros(4, 3)}
    aligned = {name: torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])}  # span e0
    bases = subspace_bases(aligned, base)
    assert bases[name].shape == (4, 1)
    weights = {name: torch.arange(12.0).view(4, 3) + 1}
    row0 = {name: torch.zeros(4, 3, dtype=torch.bool)}
    row0[name][0] = True
    share, rand = subspace_share(row0, weights, bases, [0])
    assert share.tolist() == pytest.approx([1.0]) and rand.tolist() == pytest.approx([1 / 4])  # rank 1 of 4
    row2 = {name: torch.zeros(4, 3, dtype=torch.bool)}
    row2[name][2] = True
    share, rand = subspace_share(row2, weights, bases, [0])
    assert share.tolist() == pytest.approx([0.0]) and rand.tolist() == pytest.approx([1 / 4])
    # half the energy in row 0: share = ‖row 0‖² / ‖rows 0 and 2‖²
    both = {name: row0[name] | row2[name]}
    w = weights[name]
    assert subspace_share(both, weights, bases, [0])[0].item() == pytest.approx(
        float(w[0].square().sum() / (w[0].square().sum() + w[2].square().sum())))
    empty = {name: torch.zeros(4, 3, dtype=torch.bool)}
    assert torch.isnan(subspace_share(empty, weights, bases, [0])[0]).all()
    assert subspace_bases(base, base) == {}  # no alignment update: no subspace


# ------------------------------------------------------------------------------------------ the run folder


@pytest.fixture(scope="module")
def aligned_run(tmp_path_factory):
    from workbench import steps
    from workbench.config import EvalSpec, GenerationSpec
    from workbench.presets import preset

    ev = EvalSpec(n_harmful=2, n_benign=2, n_task=2, judge=False, judge_embedder="hashing",
                  generation=GenerationSpec(max_new_tokens=4, batch_size=8))
    return steps.align(preset("tiny").align, "tiny-llama", tmp_path_factory.mktemp("sp-runs"), 0, ev, progress=False)


SMALL = dict(criteria=["wanda", "wanda_setdiff", "pq", "random", "delta"], k=[1.0, 4.0], n_calibration=4,
             n_eval_prompts=4, n_utility=4, max_new_tokens=4, pq_grid=[0.02, 0.2])


@pytest.fixture(scope="module")
def study_run(aligned_run, tmp_path_factory):
    from workbench.studies.safety_params import make_spec, run_study

    out = tmp_path_factory.mktemp("sp-study") / "study"
    return run_study(make_spec(**SMALL), str(aligned_run), out, formats=("html",), progress=False)


def test_run_folder_is_written_and_read_back_typed(study_run, aligned_run):
    from workbench.figures import load_study, study_runs
    from workbench.runs import open_run
    from workbench.studies.safety_params import Measure, PQChoice, SafetyParamsResult, load_result

    run = open_run(study_run, "study")
    assert run.name == "safety-params" and run.spec.study == "safety-params" and run.seed == 0
    assert run.spec.params["criteria"] == SMALL["criteria"] and run.spec.base == "tiny-llama"
    r = load_result(study_run)
    assert isinstance(r, SafetyParamsResult) and isinstance(r.unpruned, Measure)
    assert all(isinstance(x, PQChoice) for x in r.pq) and r.act is None
    assert r.base == "tiny-llama" and r.model == str(aligned_run)
    C, K = len(SMALL["criteria"]), 2
    assert r.refusal_lost.shape == (C, K) and r.jaccard.shape == (K, C, C)
    assert r.jaccard_cells.shape == (K, C, C, 4, 7) and r.layer_share.shape == (C, K, 4)
    assert r.subspace_share.shape == (C, K, 4) and r.refusal_flags.shape == (C, K, 4)
    # bookkeeping: a larger k prunes more, the same count for every criterion under per-matrix ranking
    assert (r.n_pruned[:, 1] > r.n_pruned[:, 0]).all() and (r.n_pruned == r.n_pruned[0]).all()
    assert int(r.n_pruned[0, 0]) == sum(round(0.01 * n) for n in _matrix_sizes())
    # the curve is what the flags say, relative to the unpruned model
    assert torch.allclose(r.refusal, 100 * r.refusal_flags.float().mean(-1))
    assert r.unpruned.refusal == pytest.approx(100 * float(r.unpruned_flags.float().mean()))
    assert torch.allclose(r.refusal_lost, r.unpruned.refusal - r.refusal, atol=1e-4)
    assert torch.allclose(r.utility_lost, r.utility_nll - r.unpruned.utility_nll, atol=1e-5)
    assert (r.refusal_lost_low <= r.refusal_lost + 1e-6).all() and (r.refusal_lost <= r.refusal_lost_high + 1e-6).all()
    # a criterion overlaps itself fully; shares sum to one
    assert torch.allclose(torch.diagonal(r.jaccard, dim1=1, dim2=2), torch.ones(K, C))
    assert torch.allclose(r.layer_share.sum(-1), torch.ones(C, K))
    # layer shares come from the global ranking: delta's, recomputed by hand from |W_aligned − W_base|
    aligned, base = linear_weights(load_model(aligned_run)[0]), linear_weights(load_model("tiny-llama")[0])
    (free,) = top_masks({n: (aligned[n] - base[n]).abs() for n in aligned}, [1.0], "global")
    assert torch.allclose(r.layer_share[r.index("delta"), 0], layer_shares(free, [0, 1, 2, 3]))
    assert not any(free[n].any() for n in free if ".mlp." in n)  # the LoRA alignment touched q/k/v/o only
    finite = r.subspace_share[~torch.isnan(r.subspace_share)]
    assert finite.numel() and ((finite >= 0) & (finite <= 1 + 1e-6)).all()
    metrics = json.loads((study_run / "metrics.json").read_text())
    assert metrics["wanda@1%.refusal_lost"] == pytest.approx(float(r.refusal_lost[0, 0]))
    assert {p.name for p in (study_run / "figures").iterdir()} == {
        "safety_specificity.html", "jaccard.html", "jaccard_cells.html", "layer_share.html", "safelora_subspace.html"}
    (found,) = study_runs(study_run.parent)
    assert found.path == study_run and isinstance(load_study(found), SafetyParamsResult)


def _matrix_sizes():
    # tiny-llama per layer: q, o 64×64; k, v 32×64; gate, up 176×64; down 64×176
    return [64 * 64, 32 * 64, 32 * 64, 64 * 64, 176 * 64, 176 * 64, 64 * 176] * 4


def test_the_study_is_deterministic_under_its_seed(study_run, aligned_run, tmp_path):
    from workbench.studies.safety_params import load_result, make_spec, study

    again = study(make_spec(**{**SMALL, "criteria": ["pq", "random"]}), str(aligned_run), progress=False)
    first = load_result(study_run)
    for name in ("pq", "random"):
        c, d = first.index(name), again.index(name)
        assert torch.equal(first.refusal_flags[c], again.refusal_flags[d]), name
        assert torch.allclose(first.utility_nll[c], again.utility_nll[d]), name
    assert [x.model_dump() for x in first.pq] == [x.model_dump() for x in again.pq]


def test_resume_measures_only_what_is_missing(aligned_run, tmp_path, monkeypatch):
    from workbench.studies import safety_params as sp

    spec = sp.make_spec(**{**SMALL, "criteria": ["random", "delta"], "k": [1.0]})
    first = sp.study(spec, str(aligned_run), progress=False, checkpoint=tmp_path)
    log = json.loads((tmp_path / "measurements.json").read_text())
    assert set(log) == {"unpruned", "random@1", "delta@1"}
    del log["delta@1"]  # as if interrupted before the last cell
    (tmp_path / "measurements.json").write_text(json.dumps(log))
    calls = []
    real = sp.Meter.__call__
    monkeypatch.setattr(sp.Meter, "__call__", lambda self, model: calls.append(1) or real(self, model))
    again = sp.study(spec, str(aligned_run), progress=False, checkpoint=tmp_path, resume=True)
    assert len(calls) == 1  # only delta at 1 % was measured again
    assert torch.equal(first.refusal_flags, again.refusal_flags) and torch.equal(first.n_pruned, again.n_pruned)
    assert torch.allclose(first.utility_nll, again.utility_nll)


def test_act_drives_freeze_and_pruning_after_the_attack(aligned_run, tmp_path, monkeypatch):
    from workbench.runs import open_run
    from workbench.studies import safety_params_act
    from workbench.studies.safety_params import calibration, load_result, make_spec, run_study

    spec = make_spec(criteria=["wanda", "random"], k=[1.0], n_calibration=4, n_eval_prompts=2, n_utility=2,
                     max_new_tokens=2, act=True, act_k=2.0, act_layers=1, preset="tiny")
    path = run_study(spec, str(aligned_run), tmp_path / "acted", formats=(), progress=False)
    rows = load_result(path).act
    # resuming finds every finished run instead of training or evaluating again
    monkeypatch.setattr(safety_params_act, "attack", lambda *a, **k: pytest.fail("attack ran again"))
    monkeypatch.setattr(safety_params_act, "prune_and_evaluate", lambda *a, **k: pytest.fail("pruned again"))
    model, tok = load_model(aligned_run)
    safety, utility, refusal = calibration(tok, spec, 0)
    inputs = CriterionInputs(model=model, safety=safety, utility=utility, refusal=refusal)
    again = safety_params_act.act(spec, str(aligned_run), "tiny-llama", [0, 1, 2, 3], inputs, path / "act", 0,
                                  False, resume=True)
    assert again == rows
    assert [(r.criterion, r.stage) for r in rows] == [
        ("none", "none"), ("wanda", "fine-tuning"), ("wanda", "post-fine-tuning"),
        ("random", "fine-tuning"), ("random", "post-fine-tuning")]
    for row in rows:
        run = open_run(path / row.run)
        assert row.fa is not None and (row.hs is not None or row.refusal_harmful is not None)
        if row.stage == "fine-tuning":
            assert run.kind == "defend" and run.spec.defense.name == "freeze"
            assert f"freeze layers {run.spec.defense.params['layers']}" == row.detail
            assert len(run.spec.defense.params["layers"]) == 1
        elif row.stage == "post-fine-tuning":
            assert run.kind == "eval" and run.spec.pruned_by == row.criterion
            attacked = open_run(path / rows[0].run)
            assert run.spec.n_pruned == sum(round(0.02 * n) for n in _matrix_sizes())
            assert run.spec.model.endswith(attacked.path.name) and run.spec.attacked_run == attacked.path.name
        else:
            assert run.kind == "attack"


# ------------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("args, message", [
    (["--criteria", "wanda,magic"], "unknown criterion 'magic'"),
    (["--k", "0,1"], "k must be percentages in (0, 100]"),
    (["--k", "150"], "k must be percentages in (0, 100]"),
    (["--k", "one"], "--k expects comma-separated numbers"),
    (["--param", "colour=3"], "unknown parameter"),
])
def test_cli_bad_input_exits_2_with_one_line(tiny_model_dir, tmp_path, args, message):
    res = CliRunner().invoke(app, ["study", "safety-params", "--model", str(tiny_model_dir),
                                   "--out", str(tmp_path / "s"), *args])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split()) and not (tmp_path / "s").exists()


def test_cli_delta_without_a_base_is_an_input_error(tiny_model_dir, tmp_path):
    res = CliRunner().invoke(app, ["study", "safety-params", "--model", str(tiny_model_dir), "--out",
                                   str(tmp_path / "s"), "--criteria", "random,delta", "--k", "1"])
    assert res.exit_code == 2 and "needs the base model" in " ".join(res.output.split()), res.output


def test_cli_writes_a_study_run(tiny_model_dir, other_tiny_dir, tmp_path):
    out = tmp_path / "s"
    res = CliRunner().invoke(app, ["study", "safety-params", "--model", str(tiny_model_dir), "--base",
                                   str(other_tiny_dir), "--out", str(out), "--criteria", "grad,random,delta", "--k",
                                   "2,1", "--formats", "html", "--param", "n_calibration=2", "--param",
                                   "n_eval_prompts=2", "--param", "n_utility=2", "--param", "max_new_tokens=2"])
    assert res.exit_code == 0, res.output
    from workbench.studies.safety_params import load_result

    r = load_result(out)
    assert r.k == [1.0, 2.0] and r.criteria == ["grad", "random", "delta"] and r.pq is None
    again = CliRunner().invoke(app, ["study", "safety-params", "--model", str(tiny_model_dir), "--out", str(out),
                                     "--criteria", "random", "--k", "1"])
    assert again.exit_code == 2 and "already exists" in " ".join(again.output.split())
