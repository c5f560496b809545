"""Constrain-SFT: the token-wise constrained fine-tuning objective of Qi, Panda, Lyu, Ma, Roy, Beirami, Mittal &
Henderson, "Safety Alignment Should Be Made More Than Just a Few Tokens Deep", ICLR 2025, arXiv:2406.05946
(section 4, eq. 3).

Alignment is shallow: it mostly lives in the first few answer tokens, which is why fine-tuning erodes it fast.
The constrained objective keeps the first tokens' distribution close to the aligned model's:

    min_θ  E_{(x,y)}  Σ_t  −(2/β_t) · log σ( β_t · Δ_t ),
    Δ_t = log π_θ(y_t | x, y_<t) − log π_aligned(y_t | x, y_<t)

Per token, the gradient is −2 σ(−β_t Δ_t) · ∇ log π_θ(y_t|·): at Δ_t = 0 it equals the cross-entropy
gradient; once π_θ exceeds π_aligned on a token, a large β_t shuts the gradient off (the token may not move far
from the aligned model), a small β_t (→ 0) gives back plain SFT. β_t is large on the first answer tokens and
small after them.

Defaults are the paper's (Llama-2-7B-Chat): β_1 = 0.5, β_t = 2 for 2 ≤ t ≤ 5, β_t = 0.1 for t > 5
(`betas = [0.5, 2, 2, 2, 2]`, `beta_rest = 0.1`). t counts answer tokens from 1 (the end-of-turn token that
closes the answer is an answer token too). π_aligned is a frozen copy of `context.model`.

Implementation: a `backward` plugin — one trainable forward and one no-grad reference forward per micro-batch.
The per-token losses are averaged over the batch's answer tokens (like the loop's `lm_loss`, so learning rates
transfer); the paper writes a per-example sum. The value returned to the loop (the training curve) is the plain
cross-entropy, comparable with undefended runs; the constrained loss is in `plugin.last`.

Not included: the paper also evaluates fine-tuning with safety-recovery examples mixed in; combine with the
SafeInstr data hook for that.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from workbench.config import Spec
from workbench.defenses.context import TrainingContext
from workbench.defenses.finetune.common import device_of, dtype_of, reference_model
from workbench.training.plugins import TrainPlugin, TrainState


class ConstrainSFTParams(Spec):
    betas: list[float] = [0.5, 2.0, 2.0, 2.0, 2.0]  # β_1, β_2, ...: the first answer tokens
    beta_rest: float = Field(0.1, gt=0)  # β_t for every later answer token


def answer_logprobs(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(y_t | ·) `[batch, pos-1]` (0 off the answer), answer mask `[batch, pos-1]` bool)."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    logits = out.logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100,
                          reduction="none").view(labels.shape)
    return -nll, labels != -100


def token_betas(mask: torch.Tensor, betas: list[float], beta_rest: float) -> torch.Tensor:
    """β_t at each answer position (`[batch, pos-1]`; t = 1, 2, ... counted along each row's answer)."""
    t = mask.long().cumsum(1)  # answer-token index t at answer positions (meaningless, but ≥ 0, elsewhere)
    # table[t] = β_t for 1 ≤ t ≤ K, table[K+1] = β_rest for every later t; table[0] only fills non-answer slots
    table = torch.tensor([beta_rest, *betas, beta_rest], dtype=torch.float32, device=mask.device)
    return table[t.clamp(max=len(betas) + 1)]


def constrained_loss(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, betas: list[float],
                     beta_rest: float) -> torch.Tensor:
    """mean over answer tokens of −(2/β_t) log σ(β_t (log π_θ − log π_aligned))."""
    beta = token_betas(mask, betas, beta_rest)
    per_token = -(2.0 / beta) * F.logsigmoid(beta * (logp - ref_logp))
    return per_token[mask].mean()


class ConstrainSFTPlugin(TrainPlugin):
    name = "constrain_sft"

    def __init__(self, params: ConstrainSFTParams, reference: str):
        self.params, self.reference = params, reference
        self.ref = None
        self.last: dict = {}

    def setup(self, model, tokenizer, state: TrainState) -> list:
        if self.ref is None:
            self.ref = reference_model(self.reference, device_of(model), dtype_of(model))
        return []

    def backward(self, model, batch: dict, state: TrainState, scale: float) -> float:
        logp, mask = answer_logprobs(model, batch)
        with torch.no_grad():
            ref_logp, _ = answer_logprobs(self.ref, batch)
        loss = constrained_loss(logp, ref_logp, mask, self.params.betas, self.params.beta_rest)
        (loss * scale).backward()
        ce = -logp.detach()[mask].mean().item()
        self.last = {"loss": ce, "constrained_loss": loss.item(),
                     "mean_log_ratio": (logp.detach() - ref_logp)[mask].mean().item()}
        return ce


def plugins(params: ConstrainSFTParams, context: TrainingContext) -> list[TrainPlugin]:
    return [ConstrainSFTPlugin(params, str(context.model))]
