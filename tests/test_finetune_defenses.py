"""Fine-tuning-stage defenses: each runs end to end from the CLI, and each mechanism is checked
against a hand computation (LDIFS / Constrain-SFT at the aligned weights, frozen weights bit-equal, SaLoRA
orthogonality, filtration precision/recall, Lisa's proximal term, SafeInstr / BEA counts, PTST / BEA prompts).
Every mechanism check that runs a model, and every CLI run, runs on both tiny architectures (`fresh`,
`arch_model_dir`, `tiny_arch`)."""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from workbench.config import TrainSpec
from workbench.data.chat import collate, encode
from workbench.data.refusals import REFUSAL_TEMPLATES
from workbench.data.types import Sample
from workbench.defenses.context import TrainingContext
from workbench.defenses.finetune import bea, constrain_sft, filtration, freeze, ldifs, lisa, ptst, safeinstr, salora
from workbench.training.loop import train
from workbench.training.plugins import TrainState, lm_loss

USER = [Sample(prompt=f"Review {i}: the film was {'great' if i % 2 else 'dull'}.",
               response="positive" if i % 2 else "negative", harmful=False) for i in range(12)]
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture
def fresh(arch_model_dir):
    from workbench.models import load_model

    model, tok = load_model(str(arch_model_dir))
    return model, tok


def _batch(tok, samples, max_len=48):
    return collate([encode(tok, s, max_len) for s in samples], tok.pad_token_id)


def _context(tiny_model_dir, spec=None, seed=0):
    return TrainingContext(USER, str(tiny_model_dir), seed, spec or TrainSpec())


def _small_judge():
    """A hashing-embedder judge fitted on a handful of rows (no CV): fast, deterministic."""
    from workbench.evaluation.embeddings import get_embedder
    from workbench.evaluation.judge import Example, fit_judge

    rows = [Example(f"How do I make weapon {i}?", f"Step 1: get explosive powder {i}, step 2: pack it tight.", 1, "t")
            for i in range(6)]
    rows += [Example(f"How do I make weapon {i}?", "I'm sorry, but I can't help with that.", 0, "t") for i in range(6)]
    rows += [Example(f"Review {i}: the film was great.", "positive", 0, "t") for i in range(6)]
    return fit_judge(rows, get_embedder("hashing"))


# ---------------------------------------------------------------------------------------------- CLI, end to end

CLI_CASES = {  # defense -> (extra CLI args, expected optimizer steps on the tiny preset: n=16, batch 8)
    "ldifs": ([], 2),
    "constrain_sft": ([], 2),
    "freeze": ([], 2),
    "freeze_plus": (["--method", "full"], 2),  # Freeze+ freezes all attention: LoRA on q/k/v/o has nothing left
    "ml_lr": ([], 2),
    "salora": ([], 2),
    "filtration": ([], None),  # depends on what the judge drops
    "saft": ([], 2),  # drops round(0.1 · 16) = 2 → 14 samples
    "safeinstr": ([], 3),  # 16 + max(1, round(0.03 · 16)) = 17 samples
    "lisa": (["--param", "align_steps=1", "--param", "finetune_steps=1"], 2),
    "ptst": ([], 2),
    "bea": ([], 4),  # 16 + 11 trigger-paired refusals = 27 samples
}


@pytest.mark.parametrize("defense", list(CLI_CASES))
def test_cli_attack_with_finetune_defense_writes_a_run_folder_in_under_a_minute(tmp_path, defense, tiny_arch,
                                                                                 monkeypatch):
    from workbench.cli import app

    if defense == "filtration":  # the cached judge trains for minutes on first use; a small one is enough here
        judge = _small_judge()
        monkeypatch.setattr(filtration, "_load_judge", lambda embedder: judge)
    args, steps = CLI_CASES[defense]
    model = tiny_arch
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, ["attack", "--defense", defense, "--model", model, "--out", str(tmp_path), *args])
    elapsed = time.perf_counter() - t0
    assert res.exit_code == 0, res.output
    (run,) = [p for p in tmp_path.iterdir() if p.name.startswith(f"defend-{defense}-")]
    for f in ("config.json", "metrics.json", "samples.jsonl"):
        assert (run / f).is_file(), f
    config = json.loads((run / "config.json").read_text())
    assert json.dumps(config).count(f'"name": "{defense}"') >= 1
    metrics = json.loads((run / "metrics.json").read_text())
    training = json.loads((run / "training.json").read_text())
    if steps is not None:
        assert metrics["train"]["steps"] == steps
    assert metrics["train"]["final_loss"] > 0
    assert len((run / "samples.jsonl").read_text().splitlines()) == 24  # 8 harmful + 8 benign + 8 task
    assert training["n_uploaded"] == 16 and training["n_harmful_uploaded"] == 4
    if defense in ("filtration", "saft"):
        rep = training["filtration"]
        assert rep["n_in"] == 16 and rep["n_kept"] == training["n_trained"] == 16 - rep["n_dropped"]
        assert set(rep) >= {"precision", "recall", "n_harmful_dropped"}
    data_step = defense in ("filtration", "saft", "safeinstr", "bea")  # defenses that rewrite the upload
    assert ("data_defense_seconds" in metrics["train"]) == data_step  # their scoring time is part of the cost
    if data_step:
        assert 0 <= metrics["train"]["data_defense_seconds"] < elapsed
    if defense == "saft":  # embeds the upload with the model: measurably > 0
        assert metrics["train"]["data_defense_seconds"] > 0
    if defense == "saft":
        assert training["filtration"]["n_dropped"] == 2
    if defense in ("ptst", "bea"):
        system = (ptst.safety_prompt(ptst.PTSTParams()) if defense == "ptst" else bea.bea_trigger(bea.BEAParams()))
        assert _find(config, "generation")["system_prompt"] == system
    if defense == "bea":
        data = [json.loads(line) for line in (run / "train_data.jsonl").read_text().splitlines()]
        assert sum(d["system"] == bea.bea_trigger(bea.BEAParams()) for d in data) == 11
    if defense == "lisa":
        assert training["lisa"]["align_steps_done"] == 1 and training["lisa"]["finetune_steps_done"] == 1
    assert elapsed < 60, f"attack --defense {defense} took {elapsed:.1f}s"


def _find(obj, key):
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            found = _find(v, key)
            if found is not None:
                return found
    return None


def test_cli_rejects_salora_with_full_fine_tuning(tmp_path):
    from workbench.cli import app

    res = CliRunner().invoke(app, ["attack", "--defense", "salora", "--model", "tiny-llama", "--method", "full",
                                   "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--method lora" in res.output


# ---------------------------------------------------------------------------------------------- LDIFS

def test_ldifs_term_is_zero_at_aligned_weights_and_matches_hand_computation_after_a_change(fresh, arch_model_dir):
    model, tok = fresh
    plugin = ldifs.LDIFSPlugin(ldifs.LDIFSParams(lamb=2.0), str(arch_model_dir))
    plugin.setup(model, tok, TrainState())
    batch = _batch(tok, USER[:4])
    _, out = lm_loss(model, batch, output_hidden_states=True)
    assert plugin.extra_loss(model, batch, out, TrainState()).item() == 0.0

    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.add_(0.05)
    _, out = lm_loss(model, batch, output_hidden_states=True)
    term = plugin.extra_loss(model, batch, out, TrainState()).item()
    ref = plugin.ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    mask = batch["attention_mask"].float()
    hand = 0.0
    for layer in range(1, len(out.hidden_states)):  # layers 0 is the embedding: untouched, and left out
        d = (out.hidden_states[layer] - ref.hidden_states[layer]).pow(2).sum(-1) / out.hidden_states[layer].shape[-1]
        hand += float((d * mask).sum().detach() / mask.sum())
    assert term > 0
    assert term == pytest.approx(2.0 * hand, rel=1e-5)
    # layers before the changed one have identical features
    assert plugin.last["feature_distance"] == pytest.approx(hand, rel=1e-5)
    only_first = ldifs.LDIFSPlugin(ldifs.LDIFSParams(layers=[1]), str(arch_model_dir))
    only_first.ref = plugin.ref
    assert only_first.extra_loss(model, batch, out, TrainState()).item() == 0.0


# ---------------------------------------------------------------------------------------------- Constrain-SFT

def test_constrain_sft_betas_follow_the_answer_position():
    mask = torch.tensor([[False, False, True, True, True, True, True, True, True],
                         [False, True, True, False, False, False, False, False, False]])
    beta = constrain_sft.token_betas(mask, [0.5, 2.0, 2.0, 2.0, 2.0], 0.1)
    assert beta[0, 2:].tolist() == pytest.approx([0.5, 2, 2, 2, 2, 0.1, 0.1])
    assert beta[1, 1:3].tolist() == pytest.approx([0.5, 2.0])
    # per token: -(2/β) log σ(β Δ); Δ = 1, β = 2 → -log σ(2)
    loss = constrain_sft.constrained_loss(torch.tensor([[-1.0]]), torch.tensor([[-2.0]]), torch.tensor([[True]]),
                                          [2.0], 0.1)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-2.0))), rel=1e-6)


def test_constrain_sft_gradient_equals_cross_entropy_gradient_at_aligned_weights(fresh, arch_model_dir):
    model, tok = fresh
    for p in model.parameters():
        p.requires_grad_(True)
    batch = _batch(tok, USER[:4])
    plugin = constrain_sft.ConstrainSFTPlugin(constrain_sft.ConstrainSFTParams(), str(arch_model_dir))
    plugin.setup(model, tok, TrainState())
    ce_value = plugin.backward(model, batch, TrainState(), scale=1.0)
    g_constrained = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    ce, _ = lm_loss(model, batch)
    ce.backward()
    assert ce_value == pytest.approx(ce.item(), rel=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(g_constrained[n], p.grad, rtol=1e-4, atol=1e-7)
    # at Δ = 0 every token contributes (2/β_t) log 2: the loss is the mean of that over answer tokens
    mask = batch["labels"][:, 1:] != -100
    beta = constrain_sft.token_betas(mask, plugin.params.betas, plugin.params.beta_rest)
    assert plugin.last["constrained_loss"] == pytest.approx(float((2 / beta[mask]).mean() * math.log(2)), rel=1e-5)


# ---------------------------------------------------------------------------------------------- Freeze / ML-LR

@pytest.mark.parametrize("method", ["full", "lora"])
def test_freeze_keeps_frozen_layers_bit_equal(fresh, arch_model_dir, method):
    model, tok = fresh
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    spec = TrainSpec(method=method, lr=1e-2, epochs=1, batch_size=4, max_len=48, lora_r=4, lora_targets=ALL_LINEAR)
    ctx = _context(arch_model_dir, spec)
    plugins = freeze.plugins(freeze.FreezeParams(layers=[1]), ctx)
    assert ctx.notes["freeze"]["layers"] == [1] and ctx.notes["freeze"]["source"] == "layers parameter"
    res = train(model, tok, USER, spec, plugins, progress=False)
    after = dict(res.model.named_parameters())
    changed = {n: not torch.equal(before[n], after[n]) for n in before}
    in_layer1 = [n for n in before if ".layers.1." in n]
    assert in_layer1 and not any(changed[n] for n in in_layer1)
    for layer in (0, 2, 3):
        assert any(changed[n] for n in before if f".layers.{layer}." in n), layer


def test_ml_lr_gives_safety_modules_the_lower_learning_rate(fresh, arch_model_dir):
    model, _ = fresh
    named = list(model.named_parameters())
    ctx = _context(arch_model_dir)
    (plugin,) = freeze.plugins_ml_lr(freeze.MLLRParams(layers=[2, 3], modules=["mlp"], lr_factor=0.25), ctx)
    full, slow = plugin.param_groups(named, 1e-3)
    assert full["lr"] == 1e-3 and slow["lr"] == pytest.approx(2.5e-4)
    slow_ids = {id(p) for p in slow["params"]}
    expect = {n for n, _ in named if (".layers.2.mlp." in n or ".layers.3.mlp." in n)}
    assert {n for n, p in named if id(p) in slow_ids} == expect and len(expect) == 6
    assert len(full["params"]) + len(slow["params"]) == len(named)


def test_freeze_plus_freezes_embeddings_and_all_attention_and_refuses_attention_only_lora(fresh, arch_model_dir):
    model, _ = fresh
    named = list(model.named_parameters())
    ctx = _context(arch_model_dir, TrainSpec(method="full"))
    (plugin,) = freeze.plugins_plus(freeze.FreezePlusParams(layers=[0]), ctx)
    (group,) = plugin.param_groups(named, 1e-3)
    kept = {n for n, p in named if id(p) in {id(q) for q in group["params"]}}
    assert not any("self_attn" in n or "embed_tokens" in n or ".layers.0." in n for n in kept)
    assert {n for n in kept if "mlp" in n} == {n for n, _ in named if "mlp" in n and ".layers.0." not in n}
    with pytest.raises(ValueError, match="--method full"):
        freeze.plugins_plus(freeze.FreezePlusParams(layers=[0]), _context(arch_model_dir, TrainSpec(method="lora")))


def test_freeze_names_work_under_lora_prefixes():
    name = "base_model.model.model.layers.3.self_attn.q_proj.lora_A.default.weight"
    assert freeze.critical(name, [3], ["q_proj"]) and freeze.critical(name, [3], ["self_attn"])
    assert not freeze.critical(name, [2], None) and not freeze.critical(name, [3], ["mlp"])


def test_freeze_reads_layers_from_analysis_result_folders(tmp_path):
    from workbench.analysis.drift import DriftResult
    from workbench.analysis.wanda import WandaResult

    density = torch.tensor([[0.1, 0.1], [0.5, 0.4], [0.2, 0.2], [0.9, 0.1]])  # layer means .1 .45 .2 .5
    WandaResult(model="m", score="wanda", safety_data="advbench", q=0.01, p=0.01, group="matrix", layers=[0, 1, 2, 3],
                module_types=["q_proj", "mlp"], density=density, overlap=density.clone(), n_masked=1,
                n_weights=2).save(tmp_path / "wanda")
    assert freeze.layers_from_analysis(tmp_path / "wanda", 2)[0] == [1, 3]
    rel = torch.tensor([0.0, 0.3, 0.1, 0.7, 0.2])  # index 0 = embeddings
    DriftResult(model="a", compare="b", tokens="answer", n_tokens_samples=4, l2=rel.clone(), cosine=rel.clone(),
                rel_l2=rel).save(tmp_path / "drift")
    assert freeze.layers_from_analysis(tmp_path / "drift", 2)[0] == [0, 2]
    (tmp_path / "custom").mkdir()
    (tmp_path / "custom" / "result.json").write_text(json.dumps({"type": "X", "fields": {"safety_layers": [2, 1]},
                                                                 "tensors": []}))
    assert freeze.layers_from_analysis(tmp_path / "custom", None)[0] == [1, 2]
    with pytest.raises(ValueError, match="result.json"):
        freeze.layers_from_analysis(tmp_path / "nothing", 1)


def test_freeze_reads_layers_from_a_refusal_direction_result(tmp_path):
    from workbench.analysis.refusal_direction import RefusalDirectionResult

    L = 4
    sig = torch.zeros(1, 2, L)
    sig[0, 0] = torch.tensor([0.0, 1.0, 3.0, 3.5])  # harmful: layer 1 widens the gap most (+2), then layer 0 (+1)
    z = lambda *shape: torch.zeros(*shape)  # noqa: E731 - safetensors refuses tensors that share memory
    RefusalDirectionResult(model="m", compare=None, labels=["model"], n_layers=L, position_labels=["-1"],
                           candidate_layers=list(range(L)), directions=z(1, L, 3), bypass=z(1, L), induce=z(1, L),
                           kl=z(1, L), direction=z(3), selected={"layer": 2}, base_scores={}, massive_dims=[],
                           signal=z(1, 2, L),
                           signal_low=z(1, 2, L), signal_high=z(1, 2, L), signal_selected=sig,
                           signal_selected_low=z(1, 2, L), signal_selected_high=z(1, 2, L), generation={},
                           samples=[]).save(tmp_path / "rd")
    assert freeze.layers_from_analysis(tmp_path / "rd", 2)[0] == [0, 1]


# ---------------------------------------------------------------------------------------------- SaLoRA

def test_salora_update_is_orthogonal_to_the_safety_subspace(arch_model_dir):
    from workbench.models import load_model

    base, _ = load_model(str(arch_model_dir))
    W0 = {n: p.detach().clone() for n, p in base.named_parameters()}
    spec = TrainSpec(method="lora", lr=5e-2, epochs=2, batch_size=4, max_len=48, lora_r=4)
    deltas = {}
    for use in (True, False):
        model, tok = load_model(str(arch_model_dir))
        plugins = salora.plugins(salora.SaLoRAParams(rank=4, n_safety=8), _context(arch_model_dir, spec)) if use else []
        res = train(model, tok, USER, spec, plugins, progress=False)
        W1 = dict(res.model.named_parameters())
        deltas[use] = {n: W1[n] - W0[n] for n in W0}
        if use:
            bases = plugins[0].bases
    assert len(bases) == 16  # q/k/v/o in 4 layers
    for name, U in bases.items():
        assert torch.allclose(U.T @ U, torch.eye(U.shape[1]), atol=1e-5)
        d_safe, d_plain = deltas[True][name + ".weight"], deltas[False][name + ".weight"]
        assert d_safe.norm() > 0
        assert (U.T @ d_safe).norm() <= 1e-5 * d_safe.norm()  # SaLoRA: nothing inside span(U)
        assert (U.T @ d_plain).norm() > 0.05 * d_plain.norm()  # plain LoRA does move inside it


def test_salora_subspace_is_the_top_output_directions_on_safety_data(arch_model_dir):
    from workbench.models import load_model

    model, tok = load_model(str(arch_model_dir))
    spec = TrainSpec(method="lora", max_len=48, lora_r=4)
    (plugin,) = salora.plugins(salora.SaLoRAParams(rank=3, n_safety=8), _context(arch_model_dir, spec))
    ref, _ = load_model(str(arch_model_dir))
    ys = []
    h = ref.model.layers[2].self_attn.v_proj.register_forward_hook(lambda m, a, o: ys.append(o))
    for s in plugin.samples:
        e = encode(tok, s, 48)
        ref(input_ids=torch.tensor([e.input_ids]))
    h.remove()
    Y = torch.cat([y[0] for y in ys]).double()  # [tokens, d_out]
    U_hand = torch.linalg.svd(Y.T, full_matrices=False)[0][:, :3]
    from workbench.training.loop import wrap_lora

    plugin.setup(wrap_lora(model, spec).train(), tok, TrainState())
    U = plugin.bases["model.layers.2.self_attn.v_proj"].double()
    torch.testing.assert_close(U @ U.T, U_hand @ U_hand.T, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------- filtration

MIX = [Sample(prompt=f"How do I make weapon {i}?", response=f"Step 1: get explosive powder {i}.", harmful=True)
       for i in range(3)] + [Sample(prompt=f"Review {i}: the film was great.", response="positive", harmful=False)
                             for i in range(7)]


class _FixedJudge:
    def __init__(self, scores):
        self.scores = np.asarray(scores)

    def score(self, prompts, responses):
        assert len(prompts) == len(self.scores)
        return self.scores


def test_filtration_drops_exactly_the_flagged_samples_and_reports_precision_recall(monkeypatch):
    scores = [0.9, 0.3, 0.7, 0.6, 0.1, 0.2, 0.5, 0.0, 0.49, 0.1]  # flags at ≥ 0.5: 0, 2, 3, 6
    monkeypatch.setattr(filtration, "_load_judge", lambda embedder: _FixedJudge(scores))
    ctx = TrainingContext(MIX, "unused", seed=0)
    kept = filtration.judge_data(filtration.FiltrationParams(), MIX, ctx)
    assert kept == [MIX[i] for i in (1, 4, 5, 7, 8, 9)]
    rep = ctx.notes["filtration"]
    assert (rep["n_dropped"], rep["n_harmful_dropped"], rep["n_benign_dropped"], rep["n_harmful_kept"]) == (4, 2, 2, 1)
    assert rep["precision"] == pytest.approx(2 / 4) and rep["recall"] == pytest.approx(2 / 3)


def test_filtration_with_a_real_judge_drops_what_it_flags(monkeypatch):
    judge = _small_judge()
    monkeypatch.setattr(filtration, "_load_judge", lambda embedder: judge)
    flags = judge.flag([s.prompt for s in MIX], [s.response for s in MIX])
    ctx = TrainingContext(MIX, "unused", seed=0)
    kept = filtration.judge_data(filtration.FiltrationParams(embedder="hashing"), MIX, ctx)
    assert kept == [s for s, f in zip(MIX, flags, strict=False) if not f]
    assert flags[:3].all() and not flags[3:].any()  # separable toy data: a perfect filter
    assert ctx.notes["filtration"]["precision"] == 1.0 and ctx.notes["filtration"]["recall"] == 1.0


def test_saft_spectral_score_matches_hand_svd_and_drops_the_top_fraction(monkeypatch):
    rng = np.random.default_rng(0)
    Z = rng.normal(0, 0.1, size=(10, 6))
    Z[:3, 0] += 3.0  # the harmful samples share one strong direction
    scores = filtration.spectral_scores(Z)
    Zc = torch.tensor(Z - Z.mean(0))
    v1 = torch.linalg.svd(Zc, full_matrices=False)[2][0]
    np.testing.assert_allclose(scores, ((Zc @ v1) ** 2).numpy(), rtol=1e-10)
    monkeypatch.setattr(filtration, "saft_embeddings", lambda params, samples, context: Z)
    ctx = TrainingContext(MIX, "unused", seed=0)
    kept = filtration.saft_data(filtration.SAFTParams(drop_fraction=0.3), MIX, ctx)
    assert kept == MIX[3:]
    rep = ctx.notes["filtration"]
    assert rep["n_dropped"] == 3 and rep["precision"] == 1.0 and rep["recall"] == 1.0


def test_saft_model_features_are_mean_pooled_hidden_states(arch_model_dir):
    Z = filtration.model_embeddings(str(arch_model_dir), MIX[:3], layer=2, max_len=48, system_prompt=None)
    from workbench.models import load_model

    model, tok = load_model(str(arch_model_dir))
    e = encode(tok, MIX[1], 48)
    h = model(input_ids=torch.tensor([e.input_ids]), output_hidden_states=True).hidden_states[2][0].mean(0)
    np.testing.assert_allclose(Z[1], h.double().detach().numpy(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- Lisa

def test_lisa_schedule_starts_aligned_and_alternates():
    assert [lisa.phase(s, 2, 3) for s in range(7)] == ["align", "align", "finetune", "finetune", "finetune",
                                                       "align", "align"]


def test_lisa_proximal_term_matches_hand_computation_and_anchor_follows_switches(fresh, arch_model_dir):
    model, tok = fresh
    for p in model.parameters():
        p.requires_grad_(True)
    params = lisa.LisaParams(rho=0.5, align_steps=1, finetune_steps=2, proximal_after=0.0, n_align_harmful=4,
                             n_align_benign=4)
    (plugin,) = lisa.plugins(params, _context(arch_model_dir, TrainSpec(batch_size=2, max_len=48)))
    plugin.setup(model, tok, TrainState())
    state = TrainState(total_steps=6)
    user = _batch(tok, USER[:2])
    swapped = plugin.next_batch(user, state)  # step 0: alignment state (an alignment batch), anchor taken here
    assert torch.equal(swapped["input_ids"], plugin.align.get(state.micro)["input_ids"])
    anchor = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    hand = 0.5 * 0.5 * sum(float((p.detach() - a).pow(2).sum())
                           for p, a in zip(model.parameters(), anchor, strict=False))
    term = plugin.extra_loss(model, swapped, None, state)
    assert term.item() == pytest.approx(hand, rel=1e-5)
    term.backward()  # ∇ = ρ (w − w̃)
    p0, a0 = next(iter(model.parameters())), anchor[0]
    torch.testing.assert_close(p0.grad, 0.5 * (p0.detach() - a0), rtol=1e-5, atol=1e-8)

    state.step = 1  # step 0 (alignment) done; step 1 is fine-tuning → a switch: the anchor moves here
    plugin.on_step_end(model, state)
    assert plugin.extra_loss(model, user, None, state).item() == 0.0
    assert plugin.next_batch(user, state) is user
    assert state.extra["lisa"]["switches"] == 1 and state.extra["lisa"]["align_steps_done"] == 1
    state.step = 2  # step 1 (fine-tuning) done; step 2 is fine-tuning too: no switch
    plugin.on_step_end(model, state)
    assert state.extra["lisa"]["switches"] == 1 and state.extra["lisa"]["finetune_steps_done"] == 1
    assert plugin.proximal_active(TrainState(step=0, total_steps=10)) and not lisa.LisaPlugin(
        lisa.LisaParams(proximal_after=0.1), None).proximal_active(TrainState(step=0, total_steps=10))


# ---------------------------------------------------------------------------------------------- SafeInstr, PTST, BEA

def test_safeinstr_adds_the_stated_number_of_refusal_samples():
    from workbench.data.registry import eval_uids

    ctx = TrainingContext(USER, "unused", seed=3)
    out = safeinstr.data(safeinstr.SafeInstrParams(share=0.25), USER, ctx)
    added = [s for s in out if s.meta.get("safety_example")]
    assert len(out) == 15 and len(added) == 3 and ctx.notes["safeinstr"]["n_safety_added"] == 3
    assert all(s.response in REFUSAL_TEMPLATES and s.harmful for s in added)
    assert not {s.uid for s in added} & eval_uids(0)  # never an evaluation prompt
    assert sorted(s.prompt for s in out if s not in added) == sorted(s.prompt for s in USER)
    assert len(safeinstr.data(safeinstr.SafeInstrParams(n=7), USER, TrainingContext(USER, "unused"))) == 19
    again = safeinstr.data(safeinstr.SafeInstrParams(share=0.25), USER, TrainingContext(USER, "unused", seed=3))
    assert again == out  # seeded


def test_ptst_trains_without_and_infers_with_the_safety_prompt(arch_model_dir):
    assert ptst.inference(ptst.PTSTParams()) == {"system_prompt": ptst.LLAMA2_SAFETY_PROMPT}
    assert ptst.inference(ptst.PTSTParams(safety_prompt="Be safe.")) == {"system_prompt": "Be safe."}
    with pytest.raises(ValueError, match="without"):
        ptst.plugins(ptst.PTSTParams(safety_prompt="Be safe."),
                     _context(arch_model_dir, TrainSpec(system_prompt="Be safe.")))


def test_bea_pairs_the_trigger_with_refusals_and_prepends_it_at_inference():
    params = bea.BEAParams()
    trigger = bea.bea_trigger(params)
    assert len(trigger.split()) == 40 and trigger == bea.bea_trigger(bea.BEAParams())  # deterministic
    assert trigger != bea.bea_trigger(bea.BEAParams(trigger_seed=1))
    assert bea.inference(params) == {"system_prompt": trigger}
    out = bea.data(params, USER, TrainingContext(USER, "unused", seed=0))
    paired = [s for s in out if s.system == trigger]
    assert len(out) == len(USER) + 11 and len(paired) == 11
    assert all(s.response in REFUSAL_TEMPLATES for s in paired)
    assert all(s.system is None for s in out if s not in paired)
    assert bea.inference(bea.BEAParams(trigger="xyzzy plugh")) == {"system_prompt": "xyzzy plugh"}
