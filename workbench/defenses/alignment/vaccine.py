"""Vaccine: perturbation-aware alignment (Huang, Hu & Liu, "Vaccine: Perturbation-aware Alignment for Large
Language Models against Harmful Fine-tuning", NeurIPS 2024, arXiv:2402.01109).

Harmful fine-tuning drifts the hidden embeddings of the aligned model. Vaccine aligns so that the alignment
loss stays low even when every layer's hidden output is perturbed adversarially:

    min_w  max_{‖ε‖ ≤ ρ}  f( e_l(w) + ε_l ,  l = 1..L )

solved with one ascent step (SAM-style, but on activations instead of weights). Per micro-batch:

1. clean pass: g_l = ∂f/∂e_l for every layer's output e_l (`[batch, pos, d_model]`), via
   `torch.autograd.grad` on hooked outputs — parameters' `.grad` is untouched;
2. ε_l = ρ · g_l / ‖g‖, with ‖g‖ = sqrt(Σ_l ‖g_l‖²_F) taken jointly over all perturbed layers (and the
   whole batch), as in the authors' code (`_grad_norm` stacks the per-layer norms): ‖ε‖ = ρ in total,
   not per layer;
3. perturbed pass: forward hooks add the (constant) ε_l to e_l; its loss is backpropagated into the weights.

The reported task loss is the clean f(w) (comparable with SFT); the perturbed loss is in `plugin.last`.

Defaults: ρ = 2 (the authors' alignment setting for Llama-2-7B). Kept for SmolLM2: the joint norm is spread
over (layers × batch × tokens) entries, which are of the same order here (30 layers, batch 8) as in the paper
(32 layers, batch 5), so the per-entry perturbation is comparable.

Deviation to know: the authors' code hooks the *attention module's output* (`LlamaAttention`, i.e. the
attention contribution before the residual add); the paper's formula and our default perturb the decoder
layer's output (`site="resid_post"`). `site="attn_out"` reproduces the code exactly. The two differ little:
attention adds its output to the residual stream, so perturbing it is perturbing the stream mid-block
(before the MLP) instead of after the block.

Precision: trains in float32 whatever `TrainSpec.dtype` asks (the plugin's `fp32_reason`; `workbench.precision`).
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from workbench.config import Spec
from workbench.defenses.context import TrainingContext
from workbench.models.sites import sites_of
from workbench.training.plugins import TrainPlugin, TrainState, lm_loss


class VaccineParams(Spec):
    rho: float = Field(2.0, ge=0)  # total (joint) norm of the hidden-output perturbation
    site: Literal["resid_post", "attn_out"] = "resid_post"  # what is perturbed (see module docstring)
    layers: list[int] | None = None  # decoder layers to perturb; None = all


def perturbation(model, batch: dict, rho: float, site: str, layers: list[int]) -> tuple[float, dict[int, torch.Tensor]]:
    """Clean pass: returns (loss, {l: ε_l}) with ε_l = ρ · g_l / ‖g‖_joint, each `[batch, pos, d_model]`."""
    with sites_of(model).capture(model, site, layers) as outs:
        loss, _ = lm_loss(model, batch)
    grads = torch.autograd.grad(loss, [outs[layer] for layer in layers], allow_unused=True)
    grads = [torch.zeros_like(outs[layer]) if g is None else g.detach()
             for layer, g in zip(layers, grads, strict=False)]
    norm = torch.sqrt(sum(g.float().pow(2).sum() for g in grads))
    eps = {layer: (rho * g / (norm + 1e-7)).to(g.dtype) for layer, g in zip(layers, grads, strict=False)}
    return loss.item(), eps


class VaccinePlugin(TrainPlugin):
    name = "vaccine"
    # the run trains in float32 whatever TrainSpec.dtype asks (workbench.precision)
    fp32_reason = "the activation perturbation ρ·g/‖g‖ is of the size of bf16 rounding"

    def __init__(self, params: VaccineParams):
        self.params = params
        self.last: dict = {}

    def active_layers(self, model, state: TrainState) -> list[int]:
        n = sites_of(model).n_layers
        layers = list(range(n)) if self.params.layers is None else list(self.params.layers)
        bad = [layer for layer in layers if not 0 <= layer < n]
        if bad:
            raise ValueError(f"vaccine layers {bad} out of range: the model has {n} decoder layers")
        return layers

    def backward(self, model, batch: dict, state: TrainState, scale: float) -> float:
        layers = self.active_layers(model, state)
        clean, eps = perturbation(model, batch, self.params.rho, self.params.site, layers)
        with sites_of(model).add_to_outputs(model, self.params.site, eps):
            perturbed, _ = lm_loss(model, batch)
        (perturbed * scale).backward()
        self.last = {"loss": clean, "perturbed_loss": perturbed.item(),
                     "eps_norms": {layer: e.float().norm().item() for layer, e in eps.items()}}
        return clean


def plugins(params: VaccineParams, context: TrainingContext) -> list[TrainPlugin]:
    return [VaccinePlugin(params)]
