"""Embedding drift: zero against itself, exact values for a known change, along checkpoints (list and
folder), rank correlation, and the CLI (pair and sweep) on tiny-llama. The first three and the CLI pair also run on
tiny-gemma3 (`arch_model`), whose final norm scales by 1 + weight: a "known change" there is a change of that gain."""
from __future__ import annotations

import json
import time

import pytest
import torch
from typer.testing import CliRunner

from workbench.analysis.drift import (
    DriftSweepResult,
    drift_along_checkpoints,
    drift_batches,
    layer_drift,
    rank_correlation,
)
from workbench.cli import app
from workbench.models import load_model
from workbench.models.sites import sites_of


def _scale_final_gain(model, factor: float) -> None:
    """Multiply the final RMSNorm's gain by `factor` (Llama: the weight; Gemma: 1 + weight)."""
    sites = sites_of(model)
    with torch.no_grad():
        sites.module(model, "final_norm").weight.copy_(factor * sites.final_norm_gain(model) - sites.arch.norm_offset)


def test_drift_of_a_model_against_itself_is_exactly_zero(arch_model, arch_model_dir):
    model, tok = arch_model
    batches = drift_batches(tok, n_samples=6, max_len=64, batch_size=4)
    for other in (model, load_model(arch_model_dir)[0]):  # same object, and a second copy
        d = layer_drift(model, other, batches)
        for key in ("l2", "cosine", "rel_l2"):
            assert d[key].shape == (5,)  # embeddings + 4 blocks
            assert torch.count_nonzero(d[key]) == 0, key


def test_drift_values_for_a_known_change(arch_model, arch_model_dir):
    """Doubling the final RMSNorm's gain doubles only the last hidden state (HF applies the final norm to
    hidden_states[-1]): rel L2 = ‖2h − h‖/‖h‖ = 1, cosine distance 0, earlier layers exactly 0."""
    model, tok = arch_model
    other, _ = load_model(arch_model_dir)
    _scale_final_gain(other, 2.0)
    batches = drift_batches(tok, n_samples=6, max_len=64, batch_size=4)
    d = layer_drift(model, other, batches)
    assert torch.count_nonzero(d["l2"][:-1]) == 0
    assert d["rel_l2"][-1].item() == pytest.approx(1.0, abs=1e-6)
    assert d["cosine"][-1].item() == pytest.approx(0.0, abs=1e-12)
    # l2 of the last layer = mean token norm of the reference's last hidden state
    w = torch.cat([b["attention_mask"].reshape(-1).bool() for b in batches])
    with torch.no_grad():
        norms = torch.cat([model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                 output_hidden_states=True).hidden_states[-1].double().norm(dim=-1).reshape(-1)
                           for b in batches])
    assert d["l2"][-1].item() == pytest.approx(norms[w].mean().item(), rel=1e-6)


def test_drift_along_checkpoints_from_models_and_from_a_folder(arch_model, arch_model_dir, tmp_path):
    model, tok = arch_model
    scaled = []
    for k, factor in enumerate((1.0, 1.5, 3.0)):
        m, _ = load_model(arch_model_dir)
        _scale_final_gain(m, factor)
        scaled.append(m)
        m.save_pretrained(tmp_path / "ckpts" / f"step-{10 * k}")
        tok.save_pretrained(tmp_path / "ckpts" / f"step-{10 * k}")
    curve = drift_along_checkpoints(model, scaled, steps=[0, 10, 20], tokenizer=tok, n_samples=4)
    assert curve.steps == [0, 10, 20]
    assert curve.rel_l2[:, -1].tolist() == pytest.approx([0.0, 0.5, 2.0], abs=1e-6)
    assert curve.mean.tolist() == pytest.approx([0.0, 0.5 / 4, 2.0 / 4], abs=1e-6)  # mean over 4 blocks
    from_folder = drift_along_checkpoints(str(arch_model_dir), tmp_path / "ckpts", n_samples=4)
    assert from_folder.steps == [0, 10, 20]
    assert torch.allclose(from_folder.rel_l2, curve.rel_l2, atol=1e-9)


def test_rank_correlation_hand_cases():
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert rank_correlation([1, 2, 3], [5, 5, 5]) != rank_correlation([1, 2, 3], [5, 5, 5])  # nan: constant
    assert rank_correlation([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)


def test_cli_drift_pair_on_tiny(tmp_path, arch_model_dir):
    out = tmp_path / "pair"
    res = CliRunner().invoke(app, ["analyze", "drift", "--model", str(arch_model_dir), "--compare",
                                   str(arch_model_dir), "--out", str(out), "--formats", "html",
                                   "--param", "n_samples=4"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["drift_rel_l2_mean"] == 0.0 and metrics["drift_cosine_mean"] == 0.0
    assert (out / "figures" / "drift_layers.html").is_file()


def test_cli_drift_pair_needs_compare(tmp_path, tiny_model_dir):
    res = CliRunner().invoke(app, ["analyze", "drift", "--model", str(tiny_model_dir), "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "--compare" in res.output


def test_cli_drift_sweep_on_tiny(tmp_path, tiny_model_dir):
    out = tmp_path / "sweep"
    t0 = time.process_time()
    res = CliRunner().invoke(app, [
        "analyze", "drift", "--model", str(tiny_model_dir), "--out", str(out), "--formats", "html",
        "--param", "mode=sweep", "--param", "ps=[0.0,1.0]", "--param", "n=8", "--param", "max_steps=3",
        "--param", "every=2", "--param", "train_batch_size=4", "--param", "n_samples=4",
        "--param", "n_eval_prompts=3", "--param", "max_new_tokens=3", "--param", "method=full",
        "--param", "lr=0.001"])
    assert res.exit_code == 0, res.output
    assert time.process_time() - t0 < 60  # CPU seconds of this process: robust to a shared, loaded machine
    r = DriftSweepResult.load(out)
    assert r.ps == [0.0, 1.0] and r.steps == [0, 2, 3]  # step 0, every 2, and the last step
    assert r.rel_l2.shape == (2, 3, 5) and r.refusal.shape == (2, 3)
    assert torch.count_nonzero(r.rel_l2[:, 0]) == 0  # before training: the reference itself
    assert (r.drift[:, 1:] > 0).all() and (r.drift[:, 2] > r.drift[:, 1]).all()  # grows with steps
    assert r.correlations["spearman_drift_step_by_p"] == {"0": pytest.approx(1.0), "1": pytest.approx(1.0)}
    assert {p.name for p in (out / "figures").iterdir()} == {"drift_vs_step.html", "drift_vs_safety.html",
                                                               "drift_heatmap.html"}


def test_cli_drift_sweep_rejects_an_infeasible_ratio_before_training(tmp_path, tiny_model_dir, monkeypatch):
    """p = 1 with n above the harmful pool must fail at once, not after the earlier ratios have trained."""
    import workbench.analysis.drift as drift

    def no_training(*a, **k):
        raise AssertionError("training started before the infeasible ratio was detected")

    monkeypatch.setattr(drift, "train", no_training)
    out = tmp_path / "sweep"
    res = CliRunner().invoke(app, ["analyze", "drift", "--model", str(tiny_model_dir), "--out", str(out),
                                   "--param", "mode=sweep", "--param", "ps=[0.0,1.0]",
                                   "--param", "n=300"])  # 241 harmful QA
    assert res.exit_code != 0 and "harmful samples but only" in res.output
    assert not out.exists()
