"""Gradient-ascent terms on harmful answers: the one registry (`ASCENT_LOSSES`) of what an alignment defense adds
to push the harmful answers' likelihood down.

Each loss is a pure function `(logits, labels, ref_logits=None, beta=...) -> scalar` to be *minimised*:

    logits      `[batch, pos, vocab]`, logits[:, t] predicting labels[:, t] (the caller shifts them)
    labels      `[batch, pos]` token ids, −100 off the harmful answer
    ref_logits  the same shape, from the reference model (NPO only)

Plain ascent, −CE, has no lower bound: once a harmful answer is unlikely, pushing it further down costs the model
nothing it values but keeps a full-size gradient, which drives the weights away until everything the model says
collapses. The bounded alternatives stop pushing as the answer becomes unlikely:

    ce            −CE                                       the unbounded control
    log1p_ce      −log(1 + CE)                              RepNoise's ascent term (Rosati+ 2024): gradient ∝ 1/(1+CE)
    npo           (2/β)·log(1 + (π_θ(y|x)/π_ref(y|x))^β)    NPO (Zhang+ 2024): ≥ 0, gradient → 0 as π_θ/π_ref → 0
    unlikelihood  −log(1 − p_θ(y_t | ·)), mean over tokens  unlikelihood training (Welleck+ 2020): ≥ 0, → 0 as p → 0
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE = -100
UNLIKELIHOOD_EPS = 1e-5  # 1 − p is clamped here: the term is at most −log(ε) even for a certain harmful token


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(labels) `[batch, pos]`, 0 off the answer; answer mask `[batch, pos]`), in float32."""
    mask = labels != IGNORE
    logp = F.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return picked * mask, mask


def answer_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the answer tokens (the loop's `lm_loss`)."""
    logp, mask = token_logprobs(logits, labels)
    return -logp.sum() / mask.sum().clamp_min(1)


def log1p_term(ce: torch.Tensor) -> torch.Tensor:
    """−log(1 + CE): the bounded-gradient ascent of RepNoise (Rosati et al., "Representation Noising", NeurIPS
    2024, arXiv:2405.14577), applied to any cross-entropy value (RepNoise's is a mean over layers)."""
    return -torch.log1p(ce)


def ce_loss(logits, labels, ref_logits=None, beta: float = 0.1) -> torch.Tensor:
    """−CE of the harmful answers: plain gradient ascent (the control; unbounded below)."""
    return -answer_ce(logits, labels)


def log1p_ce_loss(logits, labels, ref_logits=None, beta: float = 0.1) -> torch.Tensor:
    """−log(1 + CE) (RepNoise, Rosati et al. 2024, arXiv:2405.14577): the gradient is ∇CE / (1 + CE), so it
    shrinks as the harmful answers become unlikely."""
    return log1p_term(answer_ce(logits, labels))


def npo_loss(logits, labels, ref_logits=None, beta: float = 0.1) -> torch.Tensor:
    """Negative Preference Optimization (Zhang, Lin, Bai & Mei, "Negative Preference Optimization: From
    Catastrophic Collapse to Effective Unlearning", COLM 2024, arXiv:2404.05868, eq. 3):

        L = (2/β) · mean_i log(1 + (π_θ(y_i|x_i) / π_ref(y_i|x_i))^β) = (2/β) · mean_i softplus(β · r_i),
        r_i = Σ_t [log π_θ(y_it | ·) − log π_ref(y_it | ·)]       (the whole answer's log-likelihood ratio)

    ≥ 0 and (2/β)·log 2 at π_θ = π_ref. Its gradient, 2·σ(β r_i)·∇r_i, is there that of gradient ascent on the
    answer's summed log-likelihood (β → 0 keeps it so everywhere), and its weight σ(β r_i) → 0 as π_θ/π_ref → 0.
    """
    if ref_logits is None:
        raise ValueError("npo needs the reference model's logits (ref_logits)")
    logp, mask = token_logprobs(logits, labels)
    with torch.no_grad():
        ref_logp, _ = token_logprobs(ref_logits, labels)
    ratio = (logp - ref_logp).sum(-1)  # per answer; rows without answer tokens give r = 0
    rows = mask.any(-1)
    return (2.0 / beta) * F.softplus(beta * ratio[rows]).mean()


def unlikelihood_loss(logits, labels, ref_logits=None, beta: float = 0.1) -> torch.Tensor:
    """Unlikelihood (Welleck, Kulikov, Roller, Dinan, Cho & Weston, "Neural Text Generation With Unlikelihood
    Training", ICLR 2020, arXiv:1908.04319), applied to the harmful answer's own tokens:

        L = mean_t −log(1 − p_θ(y_t | ·)),   1 − p clamped to ≥ ε = 1e-5

    ≥ 0 and ≈ p when p is small, so its gradient vanishes as the harmful tokens become unlikely. 1 − p is
    computed as −expm1(log p), exact for small p, and the clamp caps the term for a near-certain token.
    """
    logp, mask = token_logprobs(logits, labels)
    one_minus = (-torch.expm1(logp)).clamp_min(UNLIKELIHOOD_EPS)
    return -(torch.log(one_minus) * mask).sum() / mask.sum().clamp_min(1)


@dataclass(frozen=True)
class AscentLoss:
    name: str
    fn: Callable  # (logits, labels, ref_logits=None, beta=...) -> scalar to minimise
    bounded: bool  # bounded below: it cannot run to −∞ however unlikely the harmful answers get
    needs_reference: bool  # reads π_ref's logits (the model before the alignment update)
    paper: str
    formula: str


ASCENT_LOSSES: dict[str, AscentLoss] = {
    "ce": AscentLoss("ce", ce_loss, False, False, "gradient ascent (control)", "−CE"),
    "log1p_ce": AscentLoss("log1p_ce", log1p_ce_loss, False, False, "RepNoise, Rosati+ 2024", "−log(1+CE)"),
    "npo": AscentLoss("npo", npo_loss, True, True, "NPO, Zhang+ 2024", "(2/β)·log(1+(π_θ/π_ref)^β)"),
    "unlikelihood": AscentLoss("unlikelihood", unlikelihood_loss, True, False, "Welleck+ 2020",
                               "−log(1−p_θ(y_t))"),
}


def get_ascent_loss(name: str) -> AscentLoss:
    if name not in ASCENT_LOSSES:
        raise ValueError(f"unknown ascent loss {name!r}; known: {', '.join(ASCENT_LOSSES)}")
    return ASCENT_LOSSES[name]


def npo_at_reference(beta: float) -> float:
    """NPO's value where π_θ = π_ref: (2/β)·log 2."""
    return 2.0 / beta * math.log(2.0)
