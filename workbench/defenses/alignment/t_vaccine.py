"""T-Vaccine: Vaccine on safety-critical layers only (Liu, Huang et al., "Targeted Vaccine: Safety Alignment
for Large Language Models against Harmful Fine-Tuning via Layer-wise Perturbation", arXiv:2410.09760).

Uniformly perturbing every layer (Vaccine) over-perturbs layers that matter little for safety and costs memory.
T-Vaccine perturbs — and trains — only S layers, sampled with probability proportional to how strongly
*harmful* data pulls on them:

    p_l ∝ ‖∂h/∂e_l‖          h = LM loss on a harmful Q→A batch, e_l = layer l's hidden output
    A   ~ sample S of L layers without replacement from p          (every J steps)
    min_w  max_{‖ε_A‖ ≤ ρ}  f( e_l(w) + ε_l ,  l ∈ A ),   ε_l = ρ · g_l / sqrt(Σ_{k∈A} ‖g_k‖²)

p is recomputed every K steps. Both draws are deterministic functions of (seed, step) and are kept in
`state.extra["t_vaccine"]`, so a resumed run uses the same layers as an uninterrupted one.

Defaults follow the authors' script (Llama-2-7B, 32 layers): ρ = 3, S = 8, J = 20, K = 200, one harmful
sample per probe (their probe loader has batch size 1), and only the sampled layers' trainable weights get
gradients in the perturbed pass (`train_only_sampled`, the memory-saving half of the method). For SmolLM2
(30 layers) S = 8 is kept (≈ the same 1/4 of the depth); S is capped at the number of layers.
On SmolLM2 with LoRA the default half-trains the other layers' adapters and fails after the attack; the
validation split prefers `train_only_sampled=False`, with which it is nearly Vaccine (the sweep and its numbers:
docs/defenses-alignment.md). The default stays the authors' so that `t_vaccine` means their method.

Deviations: as in `vaccine.py`, the default site is the decoder layer's output (`site="resid_post"`); the
authors hook the attention module (`site="attn_out"`). The authors' code also adds layer i−1 to every sampled
i for models deeper than 26 layers; we do not. Harmful data: `harmful_qa` train split (the authors use
BeaverTails harmful pairs).

Precision: trains in float32 whatever `TrainSpec.dtype` asks (the plugin's `fp32_reason`; `workbench.precision`).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from workbench.config import Spec
from workbench.defenses.alignment.common import HarmfulBatches, device_of, harmful_batches
from workbench.defenses.alignment.vaccine import perturbation
from workbench.defenses.context import TrainingContext
from workbench.models.sites import sites_of
from workbench.training.plugins import TrainPlugin, TrainState, lm_loss


class TVaccineParams(Spec):
    rho: float = Field(3.0, ge=0)  # joint norm of the perturbation over the sampled layers
    n_layers: int = Field(8, ge=1)  # S: layers perturbed (and trained) at a time
    resample_every: int = Field(20, ge=1)  # J: steps between layer draws
    probe_every: int = Field(200, ge=1)  # K: steps between recomputing p from harmful gradients
    probe_batch_size: int = Field(1, ge=1)  # harmful samples per probe (authors: 1)
    train_only_sampled: bool = True  # freeze the other layers in the perturbed pass (authors: yes)
    site: Literal["resid_post", "attn_out"] = "resid_post"
    harmful: str = "harmful_qa"  # dataset of harmful Q→A pairs for the probe


def layer_probabilities(model, batch: dict, site: str) -> list[float]:
    """p_l = ‖∂h/∂e_l‖ / Σ_k ‖∂h/∂e_k‖ for the harmful `batch` (one entry per decoder layer)."""
    sites = sites_of(model)
    with sites.capture(model, site) as outs:
        loss, _ = lm_loss(model, batch)
    grads = torch.autograd.grad(loss, [outs[layer] for layer in range(sites.n_layers)], allow_unused=True)
    norms = np.array([0.0 if g is None else g.float().norm().item() for g in grads]) + 1e-12
    return (norms / norms.sum()).tolist()


def sample_layers(prob: list[float], k: int, seed: int, step: int) -> list[int]:
    """k distinct layers drawn with probability `prob`, deterministic in (seed, step)."""
    rng = np.random.default_rng([seed, step])
    k = min(k, len(prob))
    p = np.asarray(prob, dtype=float)
    return sorted(int(i) for i in rng.choice(len(prob), size=k, replace=False, p=p / p.sum()))


class TVaccinePlugin(TrainPlugin):
    name = "t_vaccine"
    # the run trains in float32 whatever TrainSpec.dtype asks (workbench.precision)
    fp32_reason = "the activation perturbation ρ·g/‖g‖ is of the size of bf16 rounding"

    def __init__(self, params: TVaccineParams, probe: HarmfulBatches, seed: int):
        self.params, self.probe, self.seed = params, probe, seed
        self.last: dict = {}

    def setup(self, model, tokenizer, state: TrainState) -> list:
        self.probe.setup(tokenizer)
        return []

    def active_layers(self, model, state: TrainState) -> list[int]:
        """Recompute p at multiples of K and redraw layers at multiples of J (both kept in state.extra)."""
        p = self.params
        ex = state.extra.setdefault("t_vaccine", {})
        probe_step = state.step - state.step % p.probe_every
        if ex.get("probe_step") != probe_step:
            ex["prob"] = layer_probabilities(model, self.probe.get(probe_step, device_of(model)), p.site)
            ex["probe_step"] = probe_step
        draw_step = state.step - state.step % p.resample_every
        if ex.get("draw_step") != draw_step:
            ex["layers"] = sample_layers(ex["prob"], p.n_layers, self.seed, draw_step)
            ex["draw_step"] = draw_step
        return list(ex["layers"])

    def backward(self, model, batch: dict, state: TrainState, scale: float) -> float:
        layers = self.active_layers(model, state)
        clean, eps = perturbation(model, batch, self.params.rho, self.params.site, layers)
        frozen = []
        if self.params.train_only_sampled:
            blocks = sites_of(model).layers(model)
            frozen = [q for layer in range(len(blocks)) if layer not in layers
                      for q in blocks[layer].parameters() if q.requires_grad]
        try:
            for q in frozen:
                q.requires_grad_(False)
            with sites_of(model).add_to_outputs(model, self.params.site, eps):
                perturbed, _ = lm_loss(model, batch)
            (perturbed * scale).backward()
        finally:
            for q in frozen:  # the optimizer and checkpoints still own these parameters
                q.requires_grad_(True)
        self.last = {"loss": clean, "perturbed_loss": perturbed.item(), "layers": layers,
                     "eps_norms": {layer: e.float().norm().item() for layer, e in eps.items()}}
        return clean


def plugins(params: TVaccineParams, context: TrainingContext) -> list[TrainPlugin]:
    probe = harmful_batches(params, context, batch_size=params.probe_batch_size, stream=1)
    return [TVaccinePlugin(params, probe, seed=context.seed)]
