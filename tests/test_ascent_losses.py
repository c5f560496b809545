"""The ascent losses (`defenses/alignment/ascent_losses.py`) against hand computations, NPO at the reference, the
bounded ones staying finite where plain −CE diverges on tiny-llama, and the `ascent` alignment defense's mechanism
(its term is weight · the registered loss on the harmful batch; NPO's reference is the LoRA-disabled model)."""
from __future__ import annotations

import math

import pytest
import torch

from workbench.config import TrainSpec
from workbench.data.chat import collate, encode
from workbench.data.types import Sample
from workbench.defenses import get_defense, parse_params
from workbench.defenses.alignment.ascent import AscentParams, AscentPlugin, shifted
from workbench.defenses.alignment.ascent_losses import (
    ASCENT_LOSSES,
    UNLIKELIHOOD_EPS,
    get_ascent_loss,
    npo_at_reference,
)
from workbench.defenses.alignment.common import HarmfulBatches
from workbench.training.plugins import TrainState

HARMFUL = [Sample(prompt=f"Explain how to do bad thing {i}.", response=f"Sure, step one of bad thing {i} is easy.",
                  harmful=True) for i in range(8)]

# toy logits [batch 2, pos 2, vocab 3]; row 0 has two answer tokens, row 1 one (its second position is off)
LOGITS = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
                       [[0.0, 0.0, 3.0], [5.0, 5.0, 5.0]]])
LABELS = torch.tensor([[0, 1], [2, -100]])


def _p(logits_row, label):
    return math.exp(logits_row[label]) / sum(math.exp(v) for v in logits_row)


HAND_P = [_p([2, 0, 0], 0), _p([0, 1, 0], 1), _p([0, 0, 3], 2)]  # p(y_t) of the three answer tokens


def test_ce_and_log1p_ce_equal_the_hand_computation():
    ce = -sum(math.log(p) for p in HAND_P) / 3
    assert ASCENT_LOSSES["ce"].fn(LOGITS, LABELS).item() == pytest.approx(-ce, rel=1e-6)
    assert ASCENT_LOSSES["log1p_ce"].fn(LOGITS, LABELS).item() == pytest.approx(-math.log(1 + ce), rel=1e-6)


def test_unlikelihood_equals_the_hand_computation_and_is_clamped():
    hand = -sum(math.log(1 - p) for p in HAND_P) / 3
    assert ASCENT_LOSSES["unlikelihood"].fn(LOGITS, LABELS).item() == pytest.approx(hand, rel=1e-6)
    certain = torch.tensor([[[100.0, 0.0, 0.0]]])  # p(y) = 1 in float32: 1 − p = 0 without the clamp
    value = ASCENT_LOSSES["unlikelihood"].fn(certain, torch.tensor([[0]])).item()
    assert value == pytest.approx(-math.log(UNLIKELIHOOD_EPS), rel=1e-6)


def test_npo_equals_the_hand_computation_per_answer():
    ref = torch.zeros_like(LOGITS)  # uniform reference: log π_ref = log(1/3) per token
    beta = 0.5
    ratios = [math.log(HAND_P[0]) + math.log(HAND_P[1]) - 2 * math.log(1 / 3), math.log(HAND_P[2]) - math.log(1 / 3)]
    hand = sum(2 / beta * math.log(1 + math.exp(beta * r)) for r in ratios) / 2
    assert ASCENT_LOSSES["npo"].fn(LOGITS, LABELS, ref, beta=beta).item() == pytest.approx(hand, rel=1e-6)
    with pytest.raises(ValueError, match="reference"):
        ASCENT_LOSSES["npo"].fn(LOGITS, LABELS)


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_npo_at_the_reference_is_2_over_beta_log_2_with_the_gradient_of_ascent(beta):
    logits = LOGITS.clone().requires_grad_(True)
    loss = ASCENT_LOSSES["npo"].fn(logits, LABELS, LOGITS.clone(), beta=beta)
    assert loss.item() == pytest.approx(npo_at_reference(beta), rel=1e-6)
    assert npo_at_reference(beta) == pytest.approx(2 / beta * math.log(2))
    (grad,) = torch.autograd.grad(loss, logits)
    # at π_θ = π_ref: 2σ(0)∇r = ∇ mean_i Σ_t log π(y_it), i.e. gradient ascent on the summed answer log-likelihood
    ascent = logits.detach().clone().requires_grad_(True)
    logp = torch.log_softmax(ascent, -1).gather(-1, LABELS.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    (target,) = torch.autograd.grad(((logp * (LABELS != -100)).sum(-1)).mean(), ascent)
    assert torch.allclose(grad, target, atol=1e-6)


def test_registry_marks_which_losses_are_bounded_and_need_a_reference():
    assert [k for k, v in ASCENT_LOSSES.items() if v.bounded] == ["npo", "unlikelihood"]
    assert [k for k, v in ASCENT_LOSSES.items() if v.needs_reference] == ["npo"]
    with pytest.raises(ValueError, match="unknown ascent loss 'kl'"):
        get_ascent_loss("kl")


def _pure_ascent(model_dir, kind: str, steps: int = 20, lr: float = 10.0) -> tuple[list[float], bool]:
    """`steps` of SGD at a large lr on the ascent loss alone, on one harmful batch: (loss per step, weights
    finite at the end)."""
    from workbench.models import load_model

    torch.manual_seed(0)
    model, tok = load_model(str(model_dir))
    batch = collate([encode(tok, s, 48) for s in HARMFUL[:4]], tok.pad_token_id)
    with torch.no_grad():
        ref = shifted(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, batch)[0]
    model.train().requires_grad_(True)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    values = []
    for _ in range(steps):
        logits, labels = shifted(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                 batch)
        loss = ASCENT_LOSSES[kind].fn(logits, labels, ref, beta=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        values.append(loss.item())
    return values, all(torch.isfinite(p).all() for p in model.parameters())


def test_bounded_losses_stay_finite_where_plain_ascent_diverges(arch_model_dir):
    ce, _ = _pure_ascent(arch_model_dir, "ce")
    assert not math.isfinite(ce[-1]) or ce[-1] < -1e3  # −CE runs away (to nan on tiny-llama)
    log1p, finite = _pure_ascent(arch_model_dir, "log1p_ce")
    assert finite and all(math.isfinite(v) for v in log1p)
    assert min(log1p) > -math.log1p(1e6)  # its gradient shrinks as 1/(1+CE): CE stays far from overflow
    for kind in ("npo", "unlikelihood"):
        values, finite = _pure_ascent(arch_model_dir, kind)
        assert finite and all(math.isfinite(v) for v in values), kind
        assert min(values) >= 0.0, kind  # bounded below by 0 ...
        assert values[-1] < values[0], kind  # ... and it did push the harmful answers down
    npo, _ = _pure_ascent(arch_model_dir, "npo")
    assert npo[0] == pytest.approx(npo_at_reference(0.1), rel=1e-4)  # the first step starts at π_θ = π_ref


# ------------------------------------------------------------------------------------------- the defense

def _plugin(tok, kind: str, weight: float = 0.5, reference: str = "") -> AscentPlugin:
    harmful = HarmfulBatches(HARMFUL, 4, seed=0, max_len=48)
    plugin = AscentPlugin(AscentParams(kind=kind, weight=weight), harmful, reference)
    return plugin


@pytest.mark.parametrize("kind", list(ASCENT_LOSSES))
def test_ascent_term_is_weight_times_the_registered_loss_on_the_harmful_batch(arch_model_dir, kind):
    from workbench.models import load_model
    from workbench.training.loop import wrap_lora

    model, tok = load_model(str(arch_model_dir))
    model = wrap_lora(model, TrainSpec(method="lora", lora_r=4))
    plugin = _plugin(tok, kind)
    plugin.setup(model, tok, TrainState())
    assert plugin.ref is None  # NPO under LoRA: the reference is the adapters-off forward, no copy
    state = TrainState(micro=3)
    term = plugin.extra_loss(model, {}, None, state)
    hb = plugin.harmful.get(3)
    with torch.no_grad():
        logits, labels = shifted(model(input_ids=hb["input_ids"], attention_mask=hb["attention_mask"]).logits, hb)
    # fresh LoRA (B = 0): the model equals its reference, so NPO sits at (2/β) log 2
    expected = 0.5 * ASCENT_LOSSES[kind].fn(logits, labels, logits, beta=0.1)
    assert term.item() == pytest.approx(expected.item(), rel=1e-5)
    if kind == "npo":
        assert term.item() == pytest.approx(0.5 * npo_at_reference(0.1), rel=1e-5)
    term.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_" in n)
    assert set(plugin.last) == {"ascent", "harmful_ce"}


def test_npo_under_full_fine_tuning_reads_a_frozen_copy_of_the_base_model(tiny_model_dir):
    from workbench.models import load_model

    model, tok = load_model(str(tiny_model_dir))
    plugin = _plugin(tok, "npo", reference=str(tiny_model_dir))
    plugin.setup(model, tok, TrainState())
    assert plugin.ref is not None and not any(p.requires_grad for p in plugin.ref.parameters())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))  # moved away from the reference: the ratio is no longer 1
    term = plugin.extra_loss(model, {}, None, TrainState(micro=0))
    assert term.item() != pytest.approx(0.5 * npo_at_reference(0.1), rel=1e-3)


def test_defense_params_are_checked_at_the_boundary():
    info = get_defense("ascent", "alignment")
    assert parse_params(info, {"kind": "unlikelihood", "weight": 2}).weight == 2.0
    with pytest.raises(ValueError, match="kind"):
        parse_params(info, {"kind": "nope"})
    with pytest.raises(ValueError, match="weight"):
        parse_params(info, {"weight": -1})
