"""Wanda / set difference / pruning: hand-computed scores, set-difference logic, exact pruning and
restoring, the random baseline, density maps, and the CLI; the tests with a model run on tiny-llama and
tiny-gemma3."""
from __future__ import annotations

import json
import time

import pytest
import torch
from typer.testing import CliRunner

from workbench.analysis.wanda import (
    PruneRecord,
    WandaResult,
    density_map,
    input_norms,
    mask_from_indices,
    prune,
    random_mask_like,
    set_difference,
    snip_scores,
    top_fraction,
    wanda_scores,
)
from workbench.cli import app
from workbench.models import load_model


class _Toy(torch.nn.Module):
    """ids → fixed embedding rows → layers.0.q_proj (3 → 2, no bias): activations known by hand."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(4, 3)
        self.layers = torch.nn.ModuleList([torch.nn.Module()])
        self.layers[0].q_proj = torch.nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.embed.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0], [1.0, 1.0, 1.0], [9.0, 9.0, 9.0]]))
            self.layers[0].q_proj.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [-3.0, 0.0, 4.0]]))

    def forward(self, input_ids, attention_mask=None, **kwargs):
        return self.layers[0].q_proj(self.embed(input_ids))


def test_wanda_scores_match_hand_computation():
    toy = _Toy()
    # token 3 is padding (mask 0): its huge activations must not count
    batch = {"input_ids": torch.tensor([[0, 1, 3], [2, 2, 0]]), "attention_mask": torch.tensor([[1, 1, 0], [1, 1, 1]]),
             "labels": torch.tensor([[-100, 1, -100], [-100, 2, 0]])}
    # all non-pad tokens: rows e0, e1, e2, e2, e0 → ‖X_j‖ = sqrt(Σ x_j²)
    norms = torch.tensor([(1 + 0 + 1 + 1 + 1) ** 0.5, (0 + 9 + 1 + 1 + 0) ** 0.5, (4 + 0 + 1 + 1 + 4) ** 0.5])
    s = wanda_scores(toy, [batch], modules=("q_proj",))
    assert list(s) == ["layers.0.q_proj.weight"]
    expected = toy.layers[0].q_proj.weight.abs() * norms[None, :]
    assert torch.allclose(s["layers.0.q_proj.weight"], expected, atol=1e-6)
    assert s["layers.0.q_proj.weight"][0].tolist() == pytest.approx([2.0, 2 * 11 ** 0.5, 0.5 * 10 ** 0.5])
    # answer tokens only (labels != -100): e1, e2, e0
    ans = input_norms(toy, [batch], ("q_proj",), tokens="answer")["layers.0.q_proj"]
    assert ans.tolist() == pytest.approx([2 ** 0.5, 10 ** 0.5, 5 ** 0.5])
    # two batches accumulate like one
    half = [{k: v[:1] for k, v in batch.items()}, {k: v[1:] for k, v in batch.items()}]
    assert torch.allclose(wanda_scores(toy, half, ("q_proj",))["layers.0.q_proj.weight"], expected, atol=1e-6)


def test_top_fraction_and_set_difference_on_hand_made_scores():
    safety = {"w": torch.tensor([[8.0, 7.0, 1.0, 2.0], [6.0, 5.0, 3.0, 4.0]])}
    utility = {"w": torch.tensor([[0.0, 9.0, 0.0, 0.0], [8.0, 0.0, 0.0, 7.0]])}
    # top 50 % of 8 = 4 entries: 8, 7, 6, 5
    assert top_fraction(safety["w"], 0.5).tolist() == [[True, True, False, False], [True, True, False, False]]
    # top 25 % utility = 2 entries: 9 (0,1) and 8 (1,0)
    m = set_difference(safety, utility, q=0.5, p=0.25)["w"]
    assert m.tolist() == [[True, False, False, False], [False, True, False, False]]
    # p = 0: nothing removed; q = p with identical scores: empty set
    assert torch.equal(set_difference(safety, utility, 0.5, 0.0)["w"], top_fraction(safety["w"], 0.5))
    assert not set_difference(safety, safety, 0.5, 0.5)["w"].any()
    # per output row: top 50 % of each row (2 of 4)
    assert top_fraction(safety["w"], 0.5, "row").tolist() == [[True, True, False, False], [True, True, False, False]]
    assert top_fraction(safety["w"], 0.25, "row").tolist() == [[True, False, False, False], [True, False, False, False]]
    mr = set_difference(safety, utility, 0.5, 0.25, "row")["w"]  # row utility tops: (0,1), (1,0)
    assert mr.tolist() == [[True, False, False, False], [False, True, False, False]]


def test_prune_zeroes_exactly_the_mask_and_restores(arch_model_dir, tmp_path):
    model, _ = load_model(arch_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    names = ["model.layers.0.self_attn.q_proj.weight", "model.layers.3.mlp.down_proj.weight"]
    gen = torch.Generator().manual_seed(0)
    mask = {n: torch.rand(before[n].shape, generator=gen) < 0.1 for n in names}
    rec = prune(model, mask)
    assert rec.n_zeroed == sum(int(m.sum()) for m in mask.values())
    for n, p in model.named_parameters():
        if n in mask:
            assert torch.equal(p, torch.where(mask[n], torch.zeros_like(p), before[n])), n
        else:
            assert torch.equal(p, before[n]), n
    path = rec.save(tmp_path / "prune.safetensors")
    again = PruneRecord.load(path)
    assert all(torch.equal(again.indices[n], rec.indices[n]) and torch.equal(again.values[n], rec.values[n])
               for n in names)
    assert torch.equal(mask_from_indices(again.indices, model)[names[1]], mask[names[1]])
    again.restore(model)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_random_mask_has_same_count_in_same_tensors():
    mask = {"a": torch.zeros(10, 20, dtype=torch.bool), "b": torch.ones(3, 5, dtype=torch.bool)}
    mask["a"][2, :7] = True
    r = random_mask_like(mask, seed=0)
    assert set(r) == {"a", "b"} and int(r["a"].sum()) == 7 and int(r["b"].sum()) == 15
    assert not torch.equal(r["a"], mask["a"])
    assert torch.equal(random_mask_like(mask, seed=0)["a"], r["a"])


def test_density_map_per_layer_and_module():
    mask = {"model.layers.0.self_attn.q_proj.weight": torch.tensor([[True, False], [False, False]]),
            "model.layers.1.self_attn.q_proj.weight": torch.tensor([[True, True], [False, False]]),
            "model.layers.1.mlp.down_proj.weight": torch.tensor([[True, True], [True, False]])}
    dens, layers, types = density_map(mask)
    assert layers == [0, 1] and types == ["q_proj", "down_proj"]
    assert dens[0, 0] == 0.25 and dens[1, 0] == 0.5 and dens[1, 1] == 0.75 and torch.isnan(dens[0, 1])


def test_snip_scores_are_abs_weight_times_gradient(arch_model_dir):
    from workbench.analysis.safety_metric import batches_of, calibration_samples
    from workbench.training.plugins import lm_loss

    model, tok = load_model(arch_model_dir)
    batches = batches_of(tok, calibration_samples("refusal", 4), 64, 4)
    flags = [p.requires_grad for p in model.parameters()]
    s = snip_scores(model, batches, ("o_proj",))
    assert len(s) == 4 and [p.requires_grad for p in model.parameters()] == flags  # flags restored
    model.requires_grad_(False)
    w = model.model.layers[2].self_attn.o_proj.weight
    w.requires_grad_(True)
    loss, _ = lm_loss(model, batches[0])
    (g,) = torch.autograd.grad(loss, [w])
    assert torch.allclose(s["model.layers.2.self_attn.o_proj.weight"], (w.detach() * g).abs(), atol=1e-7)


# linear weights per layer: q, o (d_out × d_model, d_model × d_out), k, v (1 or 2 KV heads × d_head), gate/up/down
N_WEIGHTS = {"tiny-llama": 4 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 64 * 176),  # q,o 64×64; k,v 32×64
             "tiny-gemma3": 4 * (2 * 128 * 64 + 2 * 32 * 64 + 3 * 64 * 176)}  # q,o 128×64 (4 × 32); k,v 32×64 (1 × 32)


def test_cli_wanda_on_tiny(tmp_path, arch_model_dir, tiny_arch):
    out = tmp_path / "wanda"
    t0 = time.process_time()
    res = CliRunner().invoke(app, [
        "analyze", "wanda", "--model", str(arch_model_dir), "--out", str(out), "--formats", "html",
        "--param", "n_calibration=8", "--param", "q=0.05", "--param", "p=0.05", "--param", "n_eval_prompts=4",
        "--param", "n_utility=4", "--param", "max_new_tokens=4"])
    assert res.exit_code == 0, res.output
    assert time.process_time() - t0 < 60  # CPU seconds of this process: robust to a shared, loaded machine
    r = WandaResult.load(out)
    assert r.density.shape == (4, 7) and r.module_types[0] == "q_proj"
    # the mask file holds exactly n_masked indices, each matrix at most q of its entries
    assert sum(int(i.numel()) for i in r.mask.values()) == r.n_masked > 0
    assert float(r.density.max()) <= 0.05 + 1e-9
    assert r.n_weights == N_WEIGHTS[tiny_arch]
    ev = r.evaluation
    assert ev["set_difference"]["n_zeroed"] == ev["random"]["n_zeroed"] == r.n_masked
    assert ev["unpruned"]["n_zeroed"] == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_masked"] == r.n_masked
    assert {p.name for p in (out / "figures").iterdir()} == {"wanda_density.html", "wanda_overlap.html",
                                                               "wanda_pruning.html"}
