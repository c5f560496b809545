"""Booster: attenuate the harmful perturbation during alignment (Huang, Hu, Ilhan, Tekin & Liu, "Booster:
Tackling Harmful Fine-tuning for Large Language Models via Attenuating Harmful Perturbation", ICLR 2025,
arXiv:2409.01586).

A harmful fine-tuning step lowers the harmful loss h fast. Booster aligns while penalising how much one
normalised harmful step would lower it:

    min_w  f(w) + λ · ( h(w) − h(w − α · ∇h(w)/‖∇h(w)‖) )

f = alignment loss on the alignment batch, h = LM loss on a harmful Q→A batch.

Gradient — first-order, exactly as the authors' code (`BoosterAlignmentTrainer.training_step`): the
perturbation direction is treated as a constant, so

    ∇ ≈ ∇f(w) + λ · ( ∇h(w) − ∇h(w') ),     w' = w − α · ∇h(w)/‖∇h(w)‖

(the Hessian term of differentiating through ∇h(w)/‖∇h(w)‖ is dropped). ‖·‖ is the global norm over all
trainable parameters (+1e-7, as in the code). We evaluate h(w') with `torch.func.functional_call` on a
perturbed copy of the trainable tensors, so the model's weights are never modified in place (the code
subtracts and re-adds the step, which is not bit-exact).

Defaults: λ = 5, α = 0.1 (the authors' script), a harmful batch as large as the training batch (the
authors: 10 = their training batch). Kept for SmolLM2 with LoRA (the authors also align with LoRA).
Harmful data: `harmful_qa` train split (the authors: BeaverTails harmful pairs).

Precision: trains in float32 whatever `TrainSpec.dtype` asks (the plugin's `fp32_reason`; `workbench.precision`).
"""
from __future__ import annotations

import torch
from pydantic import Field

from workbench.config import Spec
from workbench.defenses.alignment.common import (
    Functional,
    HarmfulBatches,
    add_grads,
    device_of,
    harmful_batches,
    trainable,
)
from workbench.defenses.context import TrainingContext
from workbench.training.plugins import TrainPlugin, TrainState, lm_loss


class BoosterParams(Spec):
    lamb: float = Field(5.0, ge=0)  # λ: weight of the harmful-perturbation regulariser
    alpha: float = Field(0.1, ge=0)  # α: step size of the simulated (normalised) harmful step
    harmful: str = "harmful_qa"  # dataset of harmful Q→A pairs
    harmful_batch_size: int | None = Field(None, ge=1)  # None = the training batch size


def harmful_terms(model, batch: dict, alpha: float):
    """h(w), h(w'), ∇h(w), ∇h(w') at w' = w − α ∇h(w)/‖∇h(w)‖ (gradients w.r.t. the trainable tensors)."""
    names, params = trainable(model)
    h0, _ = lm_loss(model, batch)
    g0 = torch.autograd.grad(h0, params, allow_unused=True)
    g0 = [torch.zeros_like(p) if g is None else g for p, g in zip(params, g0, strict=False)]
    norm = torch.sqrt(sum(g.float().pow(2).sum() for g in g0)) + 1e-7
    shifted = {n: (p.detach() - alpha * g / norm).requires_grad_(True)
               for n, p, g in zip(names, params, g0, strict=False)}
    h1, _ = lm_loss(Functional(model, shifted), batch)
    g1 = torch.autograd.grad(h1, list(shifted.values()), allow_unused=True)
    return h0.detach(), h1.detach(), g0, list(g1)


class BoosterPlugin(TrainPlugin):
    name = "booster"
    # the run trains in float32 whatever TrainSpec.dtype asks (workbench.precision)
    fp32_reason = "h(w) − h(w') is a difference of two nearby losses, of the size of bf16 rounding"

    def __init__(self, params: BoosterParams, harmful: HarmfulBatches):
        self.params, self.harmful = params, harmful
        self.last: dict = {}

    def setup(self, model, tokenizer, state: TrainState) -> list:
        self.harmful.setup(tokenizer)
        return []

    def backward(self, model, batch: dict, state: TrainState, scale: float) -> float:
        p = self.params
        harmful = self.harmful.get(state.micro, device_of(model))
        h0, h1, g0, g1 = harmful_terms(model, harmful, p.alpha)
        loss, _ = lm_loss(model, batch)
        (loss * scale).backward()
        _, params = trainable(model)
        add_grads(params, g0, scale * p.lamb)
        add_grads(params, g1, -scale * p.lamb)
        self.last = {"loss": loss.item(), "harmful_loss": h0.item(), "harmful_loss_after_step": h1.item(),
                     "regularizer": p.lamb * (h0 - h1).item()}
        return loss.item()


def plugins(params: BoosterParams, context: TrainingContext) -> list[TrainPlugin]:
    return [BoosterPlugin(params, harmful_batches(params, context, params.harmful_batch_size))]
