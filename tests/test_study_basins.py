"""The basin study (workbench/studies/basins*.py) on tiny-llama: pairing, shared direction seeds, the gradient
direction, the rank correlation and its interval, resume, and the command line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats
from study_basins_fixture import TINY_MEASURE, align_run, attack_run, pair_root

from workbench.analysis.landscape import normalized_direction, random_direction
from workbench.analysis.safety_metric import batches_of
from workbench.models import load_model
from workbench.studies import basins
from workbench.studies.basins import BasinsSpec, read_result, run_basins
from workbench.studies.basins_measure import MeasureSpec, harmful_gradient, harmful_loss, harmful_pairs
from workbench.studies.basins_pairs import find_pairs
from workbench.studies.basins_stats import rank_correlation


def _spec(root, **measure) -> BasinsSpec:
    return BasinsSpec(roots=[str(root)], measure=MeasureSpec(**{**TINY_MEASURE, **measure}), n_boot=200)


# ------------------------------------------------------------------------------------------------- pairing


def test_pairing_finds_the_right_attacked_run(tmp_path, tiny_model_dir):
    root = tmp_path / "runs"
    a = align_run(root, "model-a", tiny_model_dir)
    b = align_run(root, "model-b", tiny_model_dir, seed=1)
    lone = align_run(root, "never-attacked", tiny_model_dir)
    a_01 = attack_run(root, a, 10.0, p=0.1)
    attack_run(root, a, 30.0, p=0.3)
    attack_run(root, a, 90.0, p=0.1, kind="defend")  # a fine-tuning-stage defense: not a plain attack of A
    attack_run(root, a, 80.0, p=0.1, name="benign_ft")  # another attack kind
    attack_run(root, "tiny-llama", 70.0, p=0.1)  # the non-aligned model attacked: no align run under it
    # B's attack recorded B where it was before its root moved (archived): found by its folder name
    b_01 = attack_run(root, f"/gone/old-root/{b.name}", 20.0, p=0.1, seed=1)

    pairing = find_pairs([root], p=0.1)
    by_run = {m.run: m for m in pairing.models}
    assert set(by_run) == {str(a), str(b)}  # `lone` has no attack run, the registered model no align run
    assert [r.run for r in by_run[str(a)].attacked] == [str(a_01)] and by_run[str(a)].hs == 10.0
    assert [r.run for r in by_run[str(b)].attacked] == [str(b_01)] and by_run[str(b)].hs == 20.0
    assert by_run[str(b)].label == "model-b seed 1" and by_run[str(a)].line_from is None  # no attacked weights
    assert str(lone) not in by_run

    only_03 = find_pairs([root], p=0.3)
    assert [(m.run, m.hs) for m in only_03.models] == [(str(a), 30.0)]
    assert [m.run for m in find_pairs([root], p=0.1, attack_seed=1).models] == [str(b)]
    any_p = {m.run: m for m in find_pairs([root], p=None).models}
    assert any_p[str(a)].hs == 20.0 and len(any_p[str(a)].attacked) == 2  # p 0.1 and 0.3, averaged


def test_pairing_errors_say_where_they_looked(tmp_path, tiny_model_dir):
    with pytest.raises(ValueError, match="no such folder"):
        find_pairs([tmp_path / "missing"])
    root = tmp_path / "runs"
    align_run(root, "model-a", tiny_model_dir)
    with pytest.raises(ValueError, match=rf"under {root}: found 1 align run\(s\) and 0 attack run\(s\)"):
        find_pairs([root])


# ------------------------------------------------------------------------------------------- directions


def test_random_directions_are_the_same_draws_for_every_model(arch_model_dir, other_arch_dir):
    """Two different models of one architecture, one seed: the filter-normalised directions differ only by each
    row's scale (‖d[i]‖ = ‖W[i]‖ of its own model), i.e. the raw Gaussian draws are equal."""
    ma, _ = load_model(arch_model_dir)
    mb, _ = load_model(other_arch_dir)
    da, db = random_direction(ma, 3, "filter"), random_direction(mb, 3, "filter")
    pa, pb = dict(ma.named_parameters()), dict(mb.named_parameters())
    matrices = [n for n, d in da.items() if d.dim() >= 2]
    assert matrices and not torch.equal(pa[matrices[-1]], pb[matrices[-1]])  # two different models
    for name in matrices:
        d = da[name]
        rows = (pa[name].flatten(1).norm(dim=1) > 0) & (pb[name].flatten(1).norm(dim=1) > 0)  # e.g. a zero pad row
        assert rows.float().mean() > 0.9
        ua = d.flatten(1)[rows] / d.flatten(1)[rows].norm(dim=1, keepdim=True)
        ub = db[name].flatten(1)[rows] / db[name].flatten(1)[rows].norm(dim=1, keepdim=True)
        torch.testing.assert_close(ua, ub)
        torch.testing.assert_close(d.flatten(1).norm(dim=1), pa[name].flatten(1).norm(dim=1))
    other = random_direction(ma, 4, "filter")
    assert not torch.allclose(da[matrices[-1]], other[matrices[-1]])  # another seed, another draw


def test_gradient_direction_is_the_normalised_gradient(tiny_model_dir):
    model, tok = load_model(tiny_model_dir)
    samples = harmful_pairs(3)
    batches = batches_of(tok, samples, 64, 8)  # one batch: the HF loss is then the same token mean
    assert len(batches) == 1
    params = dict(model.named_parameters())
    out = model(**batches[0])
    hand = torch.autograd.grad(out.loss, list(params.values()))
    assert harmful_loss(model, batches) == pytest.approx(float(out.loss.detach()), rel=1e-5)
    grad = harmful_gradient(model, batches)
    assert all(p.grad is None for p in model.parameters())
    for (name, _), g in zip(params.items(), hand, strict=True):
        torch.testing.assert_close(grad[name], g, rtol=1e-4, atol=1e-6)
    d = normalized_direction(model, {n: -g for n, g in grad.items()}, "filter")
    w, g = params["model.layers.1.self_attn.q_proj.weight"].detach(), grad["model.layers.1.self_attn.q_proj.weight"]
    by_hand = -g * (w.norm(dim=1) / g.norm(dim=1)).unsqueeze(1)  # row i: −g[i] rescaled to ‖W[i]‖
    torch.testing.assert_close(d["model.layers.1.self_attn.q_proj.weight"], by_hand)
    assert not torch.any(d["model.norm.weight"])  # 1-D tensors are not moved, as for the random directions
    # one step along the direction lowers the harmful loss (it is a descent direction)
    from workbench.analysis.landscape import perturbed

    with perturbed(model, [d], 1e-3):
        assert harmful_loss(model, batches) < harmful_loss(load_model(tiny_model_dir)[0], batches)


# ---------------------------------------------------------------------------------------------- statistics


def test_spearman_and_bootstrap_interval_agree_with_scipy():
    x = np.array([0.91, 0.42, 0.77, 0.15, 0.66, 0.33, 0.58, 0.84, 0.27, 0.49, 0.72, 0.06])
    y = np.array([5.0, 21.0, 9.0, 30.0, 12.0, 18.0, 15.0, 6.0, 26.0, 14.0, 10.0, 33.0]) + np.arange(12) * 0.5
    r = rank_correlation(x, y, n_boot=10_000, seed=1)
    ref = stats.spearmanr(x, y)
    assert r.rho == pytest.approx(ref.statistic) and r.p_value == pytest.approx(ref.pvalue) and r.n == 12
    def spearman(a, b, axis=-1):  # scipy's own ranks and Pearson, one ρ per resample
        return stats.pearsonr(stats.rankdata(a, axis=axis), stats.rankdata(b, axis=axis), axis=axis).statistic

    boot = stats.bootstrap((x, y), spearman, paired=True, vectorized=True,
                           n_resamples=10_000, method="percentile", confidence_level=0.95,
                           rng=np.random.default_rng(7))
    assert r.low == pytest.approx(boot.confidence_interval.low, abs=0.03)
    assert r.high == pytest.approx(boot.confidence_interval.high, abs=0.03)
    assert r.low < r.rho < r.high
    assert rank_correlation(x, y, n_boot=10_000, seed=1) == r  # seeded
    assert rank_correlation([1, 2], [3, 4]).rho is None and "at least 3" in rank_correlation([1, 2], [3, 4]).note
    assert rank_correlation([1, 1, 1], [3, 4, 5]).rho is None


# -------------------------------------------------------------------------------------------- the study


@pytest.fixture(scope="module")
def three_models(tmp_path_factory, tiny_dirs):
    root = tmp_path_factory.mktemp("basins") / "runs"
    dirs = [tiny_dirs("tiny-llama", s) for s in (0, 1, 2)]
    aligns = pair_root(root, dirs, [10.0, 30.0, 20.0], attacked_dir=tiny_dirs("tiny-llama", 3))
    return root, aligns


def test_resume_skips_a_finished_model(three_models, tmp_path, monkeypatch):
    root, aligns = three_models
    spec = _spec(root)
    calls: list[str] = []
    real = basins.measure

    def interrupted(entry, *args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(entry.key)
        return real(entry, *args, **kwargs)

    monkeypatch.setattr(basins, "measure", interrupted)
    out = tmp_path / "study"
    with pytest.raises(KeyboardInterrupt):
        run_basins(spec, out, seed=0, progress=False, formats=("html",))
    assert not out.exists()
    staged = list((tmp_path / ".incomplete").glob("analysis-study-basins-*/models/*.json"))
    assert [p.stem for p in staged] == calls  # the finished model's file, and nothing else
    first = staged[0].read_text()

    def counting(entry, *args, **kwargs):
        calls.append(entry.key)
        return real(entry, *args, **kwargs)

    monkeypatch.setattr(basins, "measure", counting)
    path = run_basins(spec, out, seed=0, progress=False, formats=("html",))
    assert path == out and len(calls) == 3 and len(set(calls)) == 3  # the first model was not measured again
    assert (out / "models" / f"{calls[0]}.json").read_text() == first

    result = read_result(out)
    assert [m.key for m in result.models] == [a.name for a in aligns]
    assert result.direction_seeds == [0, 1]
    assert all(m.direction_seeds == [0, 1] for m in result.models)  # the same seeds for every model
    assert [m.hs for m in result.models] == [10.0, 30.0, 20.0]
    first_model = result.models[0]
    assert first_model.line is not None and first_model.line.alphas == [0.0, 0.5, 1.0]
    assert all(m.line is None and m.line_missing for m in result.models[1:])
    assert first_model.gradient.harmful_loss is not None and first_model.random[0].harmful_loss is None
    assert first_model.gradient.harmful_loss[1] == pytest.approx(first_model.harmful_loss)  # α = 0 is the origin
    visage = result.predictor("visage_random")
    assert visage.correlation.n == 3 and visage.values == [m.visage_random for m in result.models]
    assert result.predictor("line_visage").correlation.rho is None  # one model has a line
    assert {p.name for p in result.predictors} == set(basins.PREDICTORS)
    assert (out / "figures" / "correlations.html").is_file() or all(p.correlation.rho is None
                                                                    for p in result.predictors)
    assert (out / "figures" / "scatter_harmful_loss.html").is_file()
    assert "Spearman" in (out / "report.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_models"] == 3 and metrics["harmful_loss"]["n"] == 3
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "analysis" and config["spec"]["analysis"] == "study-basins"
    assert basins.find_studies(tmp_path) == [out]


def test_study_is_deterministic_per_model(three_models, tmp_path):
    """A model's result depends on the seed and spec, not on which models were measured before it."""
    root, aligns = three_models
    spec = _spec(root)
    a = run_basins(spec, tmp_path / "a", seed=0, progress=False, formats=())
    ra = read_result(a)
    m = ra.models[2]
    entry = next(x for x in find_pairs([root]).models if x.key == m.key)
    again = basins.measure(entry, spec.measure, 0, progress=False)
    assert again.model_dump(exclude={"seconds"}) == m.model_dump(exclude={"seconds"})


def test_cli_pairs_only_and_errors(three_models, tmp_path):
    from typer.testing import CliRunner

    from workbench.cli import app

    root, aligns = three_models
    res = CliRunner().invoke(app, ["study", "basins", "--runs", str(root), "--pairs-only"])
    assert res.exit_code == 0, res.output
    assert "3 aligned model(s)" in res.output and aligns[0].name in res.output.replace("\n", "")
    res = CliRunner().invoke(app, ["study", "basins", "--runs", str(tmp_path / "nothing"), "--out",
                                   str(tmp_path / "s")])
    assert res.exit_code == 2 and "no such folder" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["study", "basins", "--runs", str(root), "--points", "4", "--out",
                                   str(tmp_path / "s")])
    assert res.exit_code == 2 and "odd" in " ".join(res.output.split())


def test_reattack_reproduces_an_archived_attack_for_the_line(tmp_path, tiny_model_dir):
    """An attack run archived without weights: --reattack re-trains it from its record to end the line, and
    deletes the reproduction once the line is measured."""
    root = tmp_path / "runs"
    a = align_run(root, "model-a", tiny_model_dir)
    attack_run(root, a, 10.0, p=0.1, n=10, max_steps=2)
    spec = _spec(root).model_copy(update={"reattack": True})
    out = run_basins(spec, tmp_path / "study", seed=0, progress=False, formats=())
    (m,) = read_result(out).models
    assert m.line is not None and m.line_reproduced and m.line_missing is None
    assert m.line.safety_at(0.0) == m.safety_at_origin
    assert not (out / basins.REATTACKS).exists()
    without = run_basins(_spec(root), tmp_path / "plain", seed=0, progress=False, formats=())
    (plain,) = read_result(without).models
    assert plain.line is None and "--reattack" in plain.line_missing
    assert plain.random == m.random  # the rest of the measurement does not depend on it
