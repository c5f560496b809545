"""TAR: tamper-resistant training by adversarial meta-learning (Tamirisa et al., "Tamper-Resistant Safeguards
for Open-Weight LLMs", ICLR 2025, arXiv:2408.00761).

Simulate the attacker during alignment: from the current weights θ run K steps of harmful fine-tuning
(the inner loop), and train θ so that the *attacked* weights still behave safely, while a retain loss keeps
the model useful:

    θ_0 = θ,   θ_{k+1} = Adam-step(θ_k, ∇ CE_harmful(θ_k); lr ~ U{adversary_lrs})          k = 0..K−1
    L(θ) = retain_scale · f(θ)  +  tr_scale · (1/K) Σ_{k=1..K} L_TR(θ_k)
    L_TR(θ_k) = −H( p_{θ_k}(· | x_tr) )     negative entropy on held-out harmful answers x_tr

**First-order** (as the authors' implementation): ∇_θ L_TR(θ_k) ≈ ∇_{θ_k} L_TR(θ_k), i.e. the Jacobian
∂θ_k/∂θ is taken as the identity, so no second derivatives are needed. The inner loop runs on a detached
copy of the trainable tensors through `torch.func.functional_call`: the model's own weights and `.grad`
are never touched by the simulated attack. f is the alignment loss on the alignment batch (refusals +
benign), which for refusal training plays the role of TAR's retain objective.

Defaults and scaling. The authors (Llama-3-8B, full fine-tuning) use K = 64 inner steps (4 in their training
function's defaults), TR loss every 4th step, tr_scale = 4, retain_scale = 1, adversary learning rates
{2e-6, 2e-5, 4e-5} with AdamW, one adversary per outer step. A 64-step inner loop per outer step is out of
reach on a CPU laptop, so we use K = 4 with the TR loss at every inner step (the authors' uniform 1/K weights).
Our attacks fine-tune LoRA at lr 3e-4, so the adversary learning rates keep TAR's ratios to a typical attack lr
(0.1×, 1×, 2×): {3e-5, 3e-4, 6e-4}. Other simplifications: the adversary fine-tunes the same trainable
tensors as the defender (the current LoRA factors under LoRA); only the harmful next-token adversary is
simulated (not the retain/forget switching adversary); the entropy is taken over harmful *answer* tokens
only (the authors average over all positions); no representation-matching retain term. The harmful pool is
split in two disjoint halves: the adversary trains on one, x_tr comes from the other.
"""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from pydantic import Field

from workbench.config import Spec
from workbench.defenses.alignment.common import (
    Functional,
    HarmfulBatches,
    add_grads,
    answer_mask,
    device_of,
    harmful_pool,
    trainable,
)
from workbench.defenses.context import TrainingContext
from workbench.training.plugins import TrainPlugin, TrainState, lm_loss


class TARParams(Spec):
    inner_steps: int = Field(4, ge=1)  # K: simulated harmful fine-tuning steps per outer step
    adversary_lrs: list[float] = Field([3e-5, 3e-4, 6e-4], min_length=1)  # adversary Adam lr, one per outer step
    tr_scale: float = Field(4.0, ge=0)  # weight of the tamper-resistance loss
    retain_scale: float = Field(1.0, ge=0)  # weight of the alignment (retain) loss
    tr_every: int = Field(1, ge=1)  # take the TR loss after every tr_every-th inner step
    harmful: str = "harmful_qa"  # dataset of harmful Q→A pairs (adversary data and held-out x_tr)
    harmful_batch_size: int | None = Field(None, ge=1)  # None = the training batch size


def neg_entropy(model_call, batch: dict) -> torch.Tensor:
    """−H: minus the mean entropy of the next-token distribution at the answer positions of `batch`."""
    out = model_call(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    logp = F.log_softmax(out.logits[:, :-1][answer_mask(batch)].float(), dim=-1)
    return (logp.exp() * logp).sum(-1).mean()


def adam_step(theta: dict, grads: list, m: dict, v: dict, t: int, lr: float,
              betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01) -> dict:
    """One AdamW step (torch defaults) on detached tensors; returns the new tensors, updates m and v."""
    b1, b2 = betas
    new = {}
    for (n, p), g in zip(theta.items(), grads, strict=False):
        g = torch.zeros_like(p) if g is None else g.detach()
        m[n] = b1 * m.get(n, torch.zeros_like(p)) + (1 - b1) * g
        v[n] = b2 * v.get(n, torch.zeros_like(p)) + (1 - b2) * g * g
        step = lr * (m[n] / (1 - b1 ** t)) / ((v[n] / (1 - b2 ** t)).sqrt() + eps)
        new[n] = p.detach() * (1 - lr * weight_decay) - step
    return new


class TARPlugin(TrainPlugin):
    name = "tar"

    def __init__(self, params: TARParams, adversary: HarmfulBatches, held_out: HarmfulBatches, seed: int):
        self.params, self.adversary, self.held_out, self.seed = params, adversary, held_out, seed
        self.last: dict = {}

    def setup(self, model, tokenizer, state: TrainState) -> list:
        self.adversary.setup(tokenizer)
        self.held_out.setup(tokenizer)
        return []

    def tamper_grads(self, model, key: int) -> tuple[list[torch.Tensor], dict]:
        """Run the simulated attack from the current weights; returns (Σ_k w_k ∇L_TR(θ_k), diagnostics)."""
        p, dev = self.params, device_of(model)
        names, params = trainable(model)
        lr = random.Random(f"{self.seed}/tar-lr/{key}").choice(p.adversary_lrs)
        theta = {n: q.detach().clone() for n, q in zip(names, params, strict=False)}
        m, v = {}, {}
        x_tr = self.held_out.get(key, dev)
        g_tr = [torch.zeros_like(q) for q in params]
        adv_losses, tr_losses = [], []
        for k in range(p.inner_steps):
            theta = {n: t.requires_grad_(True) for n, t in theta.items()}
            adv, _ = lm_loss(Functional(model, theta), self.adversary.get(key * p.inner_steps + k, dev))
            grads = torch.autograd.grad(adv, list(theta.values()), allow_unused=True)
            theta = adam_step(theta, grads, m, v, k + 1, lr)
            adv_losses.append(adv.item())
            if (k + 1) % p.tr_every == 0:
                theta = {n: t.requires_grad_(True) for n, t in theta.items()}
                tr = neg_entropy(Functional(model, theta), x_tr)
                for acc, g in zip(g_tr, torch.autograd.grad(tr, list(theta.values()), allow_unused=True), strict=False):
                    if g is not None:
                        acc.add_(g.detach(), alpha=1.0 / p.inner_steps)
                tr_losses.append(tr.item())
                theta = {n: t.detach() for n, t in theta.items()}
        shift = torch.sqrt(sum((theta[n] - q.detach()).float().pow(2).sum()
                               for n, q in zip(names, params, strict=False)))
        return g_tr, {"adversary_lr": lr, "adversary_losses": adv_losses, "tr_losses": tr_losses,
                      "inner_shift": shift.item()}

    def backward(self, model, batch: dict, state: TrainState, scale: float) -> float:
        p = self.params
        g_tr, diag = self.tamper_grads(model, state.micro)
        loss, _ = lm_loss(model, batch)
        (loss * (p.retain_scale * scale)).backward()
        add_grads(trainable(model)[1], g_tr, scale * p.tr_scale)
        self.last = {"loss": loss.item(), **diag}
        return loss.item()


def plugins(params: TARParams, context: TrainingContext) -> list[TrainPlugin]:
    train, seed = context.train, context.seed
    pool = harmful_pool(params.harmful)
    size = params.harmful_batch_size or train.batch_size

    def batches(samples, stream):
        return HarmfulBatches(samples, size, seed, train.max_len, train.system_prompt, stream=stream)

    return [TARPlugin(params, batches(pool[0::2], 2), batches(pool[1::2], 3), seed)]
