"""Alignment-stage defenses: each runs end to end from the CLI, and each mechanism is checked
against a hand computation (Vaccine / T-Vaccine perturbations, Booster's regulariser and gradient, RepNoise's
noise loss, TAR's inner loop). The mechanism checks (`full_model`) and every CLI run run on both tiny
architectures."""
from __future__ import annotations

import copy
import json
import time

import pytest
import torch
from train_helpers import StopAt, answer_nll
from typer.testing import CliRunner

from workbench.config import TrainSpec
from workbench.data.chat import collate, encode
from workbench.data.types import Sample
from workbench.defenses.alignment.booster import BoosterParams, BoosterPlugin
from workbench.defenses.alignment.common import HarmfulBatches
from workbench.defenses.alignment.repnoise import RepNoiseParams, RepNoisePlugin, mmd, noise_loss
from workbench.defenses.alignment.t_vaccine import TVaccineParams, TVaccinePlugin, sample_layers
from workbench.defenses.alignment.tar import TARParams, TARPlugin, adam_step
from workbench.defenses.alignment.vaccine import VaccineParams, VaccinePlugin, perturbation
from workbench.models.sites import sites_of
from workbench.training.loop import train
from workbench.training.plugins import TrainState, lm_loss

ALIGN = [Sample(prompt=f"Request number {i}: how do I do thing {i}?",
                response="I'm sorry, but I can't help with that." if i % 2 else f"Here is how to do thing {i}.")
         for i in range(16)]
HARMFUL = [Sample(prompt=f"Explain how to do bad thing {i}.", response=f"Sure, step one of bad thing {i} is easy.",
                  harmful=True) for i in range(12)]


@pytest.fixture
def full_model(arch_model_dir):
    """A fresh tiny model (each architecture) with every weight trainable (full fine-tuning), in train mode."""
    from workbench.models import load_model

    model, tok = load_model(str(arch_model_dir))
    for p in model.parameters():
        p.requires_grad_(True)
    return model.train(), tok


def _batch(tok, samples, max_len=48):
    return collate([encode(tok, s, max_len) for s in samples], tok.pad_token_id)


def _harmful(tok, batch_size=4, stream=0):
    hb = HarmfulBatches(HARMFUL, batch_size, seed=0, max_len=48, stream=stream)
    hb.setup(tok)
    return hb


def _grads(model):
    return {n: None if p.grad is None else p.grad.detach().clone() for n, p in model.named_parameters()}


# ---------------------------------------------------------------------------------------------- CLI, end to end

@pytest.mark.parametrize("defense", ["vaccine", "t_vaccine", "repnoise", "booster", "tar", "ascent"])
def test_cli_align_with_defense_writes_a_run_folder_in_under_a_minute(tmp_path, defense, tiny_arch):
    model = tiny_arch
    from workbench.cli import app

    t0 = time.perf_counter()
    res = CliRunner().invoke(app, ["align", "--defense", defense, "--model", model, "--out", str(tmp_path)])
    elapsed = time.perf_counter() - t0
    assert res.exit_code == 0, res.output
    (run,) = [p for p in tmp_path.iterdir() if p.name.startswith(f"align-{defense}-")]
    for f in ("config.json", "metrics.json", "samples.jsonl"):
        assert (run / f).is_file(), f
    config = json.loads((run / "config.json").read_text())
    assert json.dumps(config).count(f'"name": "{defense}"') >= 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 4  # tiny preset: 32 samples, batch 8, one epoch
    assert metrics["train"]["final_loss"] > 0
    assert len((run / "samples.jsonl").read_text().splitlines()) == 24  # 8 harmful + 8 benign + 8 task
    diagnostics = json.loads((run / "training.json").read_text())["diagnostics"]  # the mechanism's own terms
    assert [d["step"] for d in diagnostics] == [1, 2, 3, 4] and all(d[defense] for d in diagnostics)
    assert elapsed < 60, f"align --defense {defense} took {elapsed:.1f}s"


def test_sft_alignment_fits_its_refusals_and_benign_answers(tiny_arch, arch_model_dir, tmp_path):
    """The baseline every alignment defense is compared with, on both tiny architectures: the SFT-aligned model
    fits the alignment mix it recorded (refusal templates for the harmful prompts, the benign answers) better than
    the model it started from."""
    from workbench import steps
    from workbench.data.types import Sample
    from workbench.models import load_model
    from workbench.presets import preset

    pr = preset("tiny")
    spec = pr.align.model_copy(update={"train": pr.align.train.model_copy(update={"lr": 1e-2, "epochs": 2})})
    ev = pr.eval.model_copy(update={"n_harmful": 1, "n_benign": 0, "n_task": 0})
    run = steps.align(spec, str(arch_model_dir), tmp_path, 0, ev, progress=False)
    mix = [Sample(**json.loads(line)) for line in (run / "train_data.jsonl").read_text().splitlines()]
    assert sum(bool(s.harmful) for s in mix) == spec.n_harmful and len(mix) == spec.n_harmful + spec.n_benign
    base, tok = load_model(str(arch_model_dir))
    aligned, _ = load_model(str(run))
    before, after = (answer_nll(m, tok, mix, spec.train.max_len) for m in (base, aligned))
    assert after < before - 0.1, (before, after)


def test_alignment_table_puts_each_aligned_model_before_and_after_the_same_attack(tmp_path):
    """sft and vaccine from tiny-llama, tar on top of the sft run (as on SmolLM2), each attacked at p = 0.25:
    the alignment table reads every number from the align and attack run folders."""
    from workbench import steps
    from workbench.config import DefenseSpec
    from workbench.leaderboard import build, write
    from workbench.presets import preset
    from workbench.runs import open_run

    pr = preset("tiny")
    short = pr.align.train.model_copy(update={"max_steps": 2})
    aligned = {}
    for name, base in (("sft", "tiny-llama"), ("vaccine", "tiny-llama"), ("tar", None)):
        spec = pr.align.model_copy(update={"defense": DefenseSpec(name=name), "train": short})
        aligned[name] = steps.align(spec, base or str(aligned["sft"]), tmp_path / "align", 0, pr.eval, progress=False)
    attacked = {d: steps.attack(pr.attack, str(a), tmp_path / "attack", 0, pr.eval, progress=False)
                for d, a in aligned.items()}
    board = build(tmp_path, ["alignment"])
    rows = {r.defense: r for r in board.rows}
    assert set(rows) == {"sft", "vaccine", "tar"}
    assert {d: r.aligned_from for d, r in rows.items()} == {"sft": "tiny-llama", "vaccine": "tiny-llama", "tar": "sft"}
    for d, r in rows.items():
        assert r.aligned_rates == {k: v for k, v in open_run(aligned[d]).metrics.items()
                                   if isinstance(v, dict) and "low" in v}
        assert r.rates["hs"] == open_run(attacked[d]).metrics["hs"]
    table = board.alignment_markdown().splitlines()
    assert table[0].startswith("| attack | p | defense | starts from | aligned: refusal harmful")
    vac = next(line for line in table if "| vaccine |" in line).split(" | ")
    ratio = rows["vaccine"].defense_s / rows["sft"].defense_s
    assert f"({ratio:.2f}×)" in vac[7]
    v = open_run(attacked["vaccine"]).metrics["refusal_harmful"]
    assert vac[10] == f"{v['value']:.0f} [{v['low']:.0f}–{v['high']:.0f}]"
    tar = next(line for line in table if "| tar |" in line).split(" | ")
    assert tar[7].startswith("sft + ")  # a phase on the sft run: its seconds come on top of sft's
    written = write(board, tmp_path / "lb" / "board", formats=("html",))
    assert tmp_path / "lb" / "board_alignment.md" in written


def test_cli_rejects_unknown_defense_hyperparameter(tmp_path):
    from workbench.cli import app

    res = CliRunner().invoke(app, ["align", "--defense", "vaccine", "--param", "rhoo=3", "--model", "tiny-llama",
                                   "--out", str(tmp_path)])
    assert res.exit_code == 2
    assert "rho" in res.output and "rhoo" in res.output


# ---------------------------------------------------------------------------------------------- Vaccine

@pytest.mark.parametrize("site", ["resid_post", "attn_out"])
def test_vaccine_perturbation_has_joint_norm_rho_along_the_hidden_gradient(full_model, site):
    model, tok = full_model
    batch = _batch(tok, ALIGN[:4])
    loss, eps = perturbation(model, batch, rho=2.0, site=site, layers=[0, 2, 3])
    assert sorted(eps) == [0, 2, 3]
    joint = torch.sqrt(sum(e.pow(2).sum() for e in eps.values())).item()
    assert joint == pytest.approx(2.0, rel=1e-5)

    # hand computation: retain_grad on the hooked outputs of layers 0, 2, 3
    outs = {}
    mods = sites_of(model).modules(model, site)
    hooks = [mods[layer].register_forward_hook(
        lambda m, a, o, layer=layer: outs.__setitem__(layer, (o[0] if isinstance(o, tuple) else o)))
        for layer in (0, 2, 3)]
    ref_loss, _ = lm_loss(model, batch)
    for h in hooks:
        h.remove()
    for t in outs.values():
        t.retain_grad()
    model.zero_grad()
    ref_loss.backward()
    g = {layer: outs[layer].grad for layer in outs}
    norm = torch.sqrt(sum(x.pow(2).sum() for x in g.values()))
    assert loss == pytest.approx(ref_loss.item(), abs=1e-6)
    for layer in (0, 2, 3):
        torch.testing.assert_close(eps[layer], 2.0 * g[layer] / norm, rtol=1e-4, atol=1e-7)
        assert eps[layer].shape == (4, batch["input_ids"].shape[1], 64)  # [batch, pos, d_model]


def test_vaccine_backward_trains_on_the_perturbed_loss_and_keeps_param_grads_clean(full_model):
    model, tok = full_model
    batch = _batch(tok, ALIGN[:4])
    plugin = VaccinePlugin(VaccineParams(rho=2.0))
    model.zero_grad(set_to_none=True)
    clean = plugin.backward(model, batch, TrainState(), scale=0.5)
    got = _grads(model)
    # all 4 layers perturbed, jointly of norm ρ; the ascent direction raises the loss
    assert sorted(plugin.last["eps_norms"]) == [0, 1, 2, 3]
    assert sum(v ** 2 for v in plugin.last["eps_norms"].values()) ** 0.5 == pytest.approx(2.0, rel=1e-5)
    assert plugin.last["perturbed_loss"] > clean

    # reference: gradient of the perturbed loss only (the clean pass must not leak into .grad)
    _, eps = perturbation(model, batch, 2.0, "resid_post", [0, 1, 2, 3])
    mods = sites_of(model).modules(model, "resid_post")
    hooks = [mods[layer].register_forward_hook(lambda m, a, o, e=e: o + e) for layer, e in eps.items()]
    model.zero_grad(set_to_none=True)
    perturbed, _ = lm_loss(model, batch)
    (perturbed * 0.5).backward()
    for h in hooks:
        h.remove()
    assert perturbed.item() == pytest.approx(plugin.last["perturbed_loss"], abs=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(got[n], p.grad, rtol=1e-5, atol=1e-7, msg=n)


# ---------------------------------------------------------------------------------------------- T-Vaccine

def test_t_vaccine_perturbs_and_trains_only_the_sampled_layers(full_model):
    model, tok = full_model
    params = TVaccineParams(n_layers=2, rho=3.0, resample_every=20, probe_every=200)
    plugin = TVaccinePlugin(params, _harmful(tok, 1, stream=1), seed=0)
    state = TrainState()
    model.zero_grad(set_to_none=True)
    plugin.backward(model, _batch(tok, ALIGN[:4]), state, scale=1.0)

    ex = state.extra["t_vaccine"]
    assert len(ex["prob"]) == 4 and sum(ex["prob"]) == pytest.approx(1.0)
    assert ex["layers"] == sample_layers(ex["prob"], 2, seed=0, step=0) and len(ex["layers"]) == 2
    chosen = ex["layers"]
    assert sorted(plugin.last["eps_norms"]) == chosen  # only the sampled layers are perturbed ...
    assert sum(v ** 2 for v in plugin.last["eps_norms"].values()) ** 0.5 == pytest.approx(3.0, rel=1e-5)
    blocks = sites_of(model).layers(model)
    for layer, block in enumerate(blocks):  # ... and only their weights receive gradients
        has_grad = [p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters()]
        assert all(has_grad) if layer in chosen else not any(has_grad), layer
    assert all(p.requires_grad for p in model.parameters())  # freezing is undone after the pass


def test_t_vaccine_layers_are_redrawn_every_j_steps_deterministically(full_model):
    model, tok = full_model
    plugin = TVaccinePlugin(TVaccineParams(n_layers=2, resample_every=3, probe_every=6), _harmful(tok, 1, 1), seed=5)
    state = TrainState()
    drawn = {}
    for step in range(7):
        state.step = step
        drawn[step] = plugin.active_layers(model, state)
    prob0 = state.extra["t_vaccine"]["prob"]
    assert drawn[0] == drawn[1] == drawn[2] == sample_layers(prob0, 2, 5, 0)
    assert drawn[3] == drawn[4] == drawn[5] == sample_layers(prob0, 2, 5, 3)
    assert state.extra["t_vaccine"]["probe_step"] == 6  # p recomputed at step 6
    assert drawn[6] == sample_layers(state.extra["t_vaccine"]["prob"], 2, 5, 6)
    # draws across many steps follow p: with p concentrated on layer 2, layer 2 is almost always drawn
    counts = [sum(layer in sample_layers([0.01, 0.01, 0.97, 0.01], 1, 0, s) for s in range(200)) for layer in range(4)]
    assert counts[2] > 180


def test_t_vaccine_resume_matches_uninterrupted_run(tiny_model_dir, tmp_path):
    from workbench.models import load_model

    spec = TrainSpec(method="lora", lr=1e-2, epochs=3, batch_size=4, max_len=48, seed=1, checkpoint_every=2)
    params = TVaccineParams(n_layers=2, resample_every=2, probe_every=4)

    def plugin(tok):
        return TVaccinePlugin(params, _harmful(tok, 1, 1), seed=1)

    m, tok = load_model(str(tiny_model_dir))
    full = train(m, tok, ALIGN, spec, [plugin(tok)], progress=False)
    m, tok = load_model(str(tiny_model_dir))
    with pytest.raises(KeyboardInterrupt):
        train(m, tok, ALIGN, spec, [plugin(tok), StopAt(5)], checkpoint_dir=tmp_path / "ck", progress=False)
    m, tok = load_model(str(tiny_model_dir))
    resumed = train(m, tok, ALIGN, spec, [plugin(tok)], checkpoint_dir=tmp_path / "ck", progress=False)
    assert resumed.state.extra["t_vaccine"] == full.state.extra["t_vaccine"]
    assert resumed.state.losses == pytest.approx(full.state.losses, abs=1e-6)


# ---------------------------------------------------------------------------------------------- Booster

def test_booster_regularizer_and_gradient_equal_a_hand_computation(full_model):
    model, tok = full_model
    lamb, alpha, scale = 5.0, 0.1, 0.5
    task = _batch(tok, ALIGN[:4])
    harmful = _harmful(tok, 4)
    state = TrainState(micro=3)
    hb = harmful.get(3)

    # by hand, on a copy: h(w), ∇h(w), step w' = w − α ∇h/‖∇h‖ in place, h(w'), ∇h(w'), ∇f(w)
    ref = copy.deepcopy(model)
    ref.zero_grad(set_to_none=True)
    h0, _ = lm_loss(ref, hb)
    h0.backward()
    names = [n for n, _ in ref.named_parameters()]
    g0 = {n: p.grad.clone() for n, p in ref.named_parameters()}
    norm = torch.sqrt(sum(g.pow(2).sum() for g in g0.values())) + 1e-7
    ref.zero_grad(set_to_none=True)
    with torch.no_grad():
        for n, p in ref.named_parameters():
            p.sub_(alpha * g0[n] / norm)
    h1, _ = lm_loss(ref, hb)
    h1.backward()
    g1 = {n: p.grad.clone() for n, p in ref.named_parameters()}
    ref = copy.deepcopy(model)
    ref.zero_grad(set_to_none=True)
    f, _ = lm_loss(ref, task)
    f.backward()
    expected = {n: scale * (p.grad + lamb * (g0[n] - g1[n])) for n, p in ref.named_parameters()}

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    plugin = BoosterPlugin(BoosterParams(lamb=lamb, alpha=alpha), harmful)
    model.zero_grad(set_to_none=True)
    loss = plugin.backward(model, task, state, scale)

    assert loss == pytest.approx(f.item(), abs=1e-6)
    assert plugin.last["harmful_loss"] == pytest.approx(h0.item(), abs=1e-6)
    assert plugin.last["harmful_loss_after_step"] == pytest.approx(h1.item(), abs=1e-5)
    assert plugin.last["regularizer"] == pytest.approx(lamb * (h0.item() - h1.item()), abs=5e-5)
    assert plugin.last["regularizer"] > 0  # a normalised harmful step does lower the harmful loss
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n  # weights never modified in place
        torch.testing.assert_close(p.grad, expected[n], rtol=1e-4, atol=1e-6, msg=n)
    assert len(names) == len(expected)


# ---------------------------------------------------------------------------------------------- RepNoise

def test_mmd_is_zero_for_gaussians_and_large_for_structured_points():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(256, 64, generator=g), torch.randn(256, 64, generator=g)
    same = mmd(a, b).item()
    assert abs(same) < 0.01
    shifted = mmd(a + 1.0, b).item()  # mean shift
    low_rank = mmd(torch.randn(256, 1, generator=g) * torch.ones(1, 64), b).item()  # one direction
    scaled = mmd(0.3 * a, b).item()  # wrong scale
    assert min(shifted, low_rank, scaled) > 50 * max(abs(same), 1e-3)
    assert noise_loss([a, a], g).item() == pytest.approx(0.0, abs=0.01)


def test_repnoise_loss_combines_noise_and_log_ascent(full_model, tiny_arch):
    model, tok = full_model
    plugin = RepNoisePlugin(RepNoiseParams(alpha=0.1, beta=0.001, mmd_tokens=64, lens_tokens=16), _harmful(tok), 0)
    state = TrainState(micro=1)
    extra = plugin.extra_loss(model, _batch(tok, ALIGN[:4]), None, state)
    last = plugin.last
    ascent = torch.log1p(torch.tensor(last["harmful_ce"])).item()
    assert extra.item() == pytest.approx(0.001 * last["noise"] - 0.1 * ascent, abs=1e-5)
    # a random model's MLP outputs are far from N(0, I): the noise term is clearly positive (a Gaussian gives
    # |MMD²| < 0.01). tiny-llama's are ~100× too small; Gemma's mlp_out is post_feedforward_layernorm's output,
    # at the Gaussian's own scale (RMS ≈ |1 + w|), so only its structure tells it apart and the term is smaller.
    assert last["noise"] > (0.5 if tiny_arch == "tiny-llama" else 0.1)
    # the same micro-batch gives the same value (seeded by (seed, micro)), so resumed runs match
    again = plugin.extra_loss(model, _batch(tok, ALIGN[:4]), None, state)
    assert again.item() == pytest.approx(extra.item(), abs=1e-6)
    extra.backward()
    assert all(p.grad is not None for p in model.model.layers.parameters())


# ---------------------------------------------------------------------------------------------- TAR

def test_tar_inner_loop_does_not_modify_the_outer_model(full_model):
    model, tok = full_model
    plugin = TARPlugin(TARParams(inner_steps=3, adversary_lrs=[1e-2]), _harmful(tok, 4, 2), _harmful(tok, 4, 3), 0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    g_tr, diag = plugin.tamper_grads(model, key=0)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
        assert p.grad is None, n  # the simulated attack never writes into .grad
    assert diag["inner_shift"] > 0.1  # ... yet the attacked copy moved
    assert diag["adversary_losses"][-1] < diag["adversary_losses"][0]  # and the attack lowered its loss
    assert len(diag["tr_losses"]) == 3
    assert sum(g.abs().sum().item() for g in g_tr) > 0

    # backward = retain gradient + tr_scale · first-order TR gradient
    task = _batch(tok, ALIGN[:4])
    ref = copy.deepcopy(model)
    f, _ = lm_loss(ref, task)
    f.backward()
    loss = plugin.backward(model, task, TrainState(micro=0), scale=1.0)
    assert loss == pytest.approx(f.item(), abs=1e-6)
    for (n, p), (_, q), g in zip(model.named_parameters(), ref.named_parameters(), g_tr, strict=False):
        torch.testing.assert_close(p.grad, q.grad + 4.0 * g, rtol=1e-4, atol=1e-6, msg=n)
        assert torch.equal(p, before[n]), n


def test_tar_adam_step_matches_torch_adamw():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 3, generator=g)
    grads = [torch.randn(5, 3, generator=g) for _ in range(3)]
    param = torch.nn.Parameter(w.clone())
    opt = torch.optim.AdamW([param], lr=0.01)
    theta, m, v = {"w": w.clone()}, {}, {}
    for t, gr in enumerate(grads, start=1):
        param.grad = gr.clone()
        opt.step()
        theta = adam_step(theta, [gr], m, v, t, lr=0.01)
    torch.testing.assert_close(theta["w"], param.detach(), rtol=1e-6, atol=1e-7)


def test_defenses_list_prints_every_defense_and_filters_by_stage():
    """`workbench defenses list` (the issue's spelling) and bare `workbench defenses` print the registry."""
    from workbench.cli import app
    from workbench.defenses import DEFENSES

    wide = {"COLUMNS": "300"}
    for argv in (["defenses"], ["defenses", "list"]):
        res = CliRunner().invoke(app, argv, env=wide)
        assert res.exit_code == 0, res.output
        assert all(name in res.output for name in DEFENSES)
    res = CliRunner().invoke(app, ["defenses", "list", "--stage", "alignment"], env=wide)
    assert res.exit_code == 0 and "vaccine" in res.output and "antidote" not in res.output
    res = CliRunner().invoke(app, ["defenses", "list", "--stage", "nope"], env=wide)
    assert res.exit_code == 2 and "alignment" in res.output


def test_defense_param_sweep_script_aligns_attacks_and_validates_each_value(tmp_path):
    """scripts/defense_param_sweep.sh on tiny-llama: per value align (with the EXTRA fixed params and MAX_STEPS) →
    attack → `eval --validation`, then the validation table names each defense variant; a rerun redoes nothing."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from workbench.runs import list_runs

    repo = Path(__file__).resolve().parents[1]
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "MODEL": "tiny-llama", "PRESET": "tiny", "DEFENSE": "vaccine", "PARAM": "rho",
           "VALUES": "0.5", "EXTRA": "site=resid_post", "MAX_STEPS": "2", "OUT": str(tmp_path),
           "WB": str(bin_dir / "workbench"), "PY": sys.executable}
    cmd = ["bash", str(repo / "scripts" / "defense_param_sweep.sh")]
    res = subprocess.run(cmd, env=env, cwd=repo, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    folder = tmp_path / "rho=0.5,site=resid_post,max_steps=2"
    (align,) = list_runs(folder / "align")
    assert align.config["spec"]["align"]["defense"]["params"] == {"rho": 0.5, "site": "resid_post"}
    assert align.metrics["train"]["steps"] == 2
    (attack,) = list_runs(folder / "attack")
    assert attack.config["spec"]["model"] == str(align.path)
    (val,) = list_runs(folder / "validation")
    assert val.config["spec"]["model"] == str(attack.path)
    assert "| vaccine(rho=0.5, site=resid_post) | " in res.stdout
    again = subprocess.run(cmd, env=env, cwd=repo, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("done already") == 3
