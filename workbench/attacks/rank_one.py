"""The linear algebra of a ROME edit (Meng et al. 2022, "Locating and Editing Factual Associations in GPT", §3.1):
one linear map W (`[d_out, d_in]`, an MLP's output projection) is changed by a rank-one update so that a chosen
key k* maps to a chosen value v*, while keys in general move as little as possible in the metric of their
second moment C = E[k kᵀ]:

    minimise ‖ΔW K‖ subject to (W + ΔW) k* = v*   ⇒   ΔW = (v* − W k*) (C⁻¹k*)ᵀ / (k*ᵀ C⁻¹ k*)

so (W + ΔW) k* = v* exactly, and any key k with kᵀ C⁻¹ k* = 0 is mapped as before. Written here rather than taken
from a library: ROME's and EasyEdit's code are tied to their own model registries and hook utilities, not to ours.

Deviation: C gets a ridge, C + λ·(tr C / d)·I (λ relative to C's mean eigenvalue, so one value suits every model),
because a few hundred benign prompts estimate C less well than ROME's 100 000 Wikipedia samples. Everything is
computed in float64 and cast back to W's dtype.
"""
from __future__ import annotations

import torch


class SecondMoment:
    """Running E[k kᵀ] over rows of `[n, d]` key batches, in float64 (ROME's `layer_stats` "mom2")."""

    def __init__(self, dim: int):
        self.sum = torch.zeros(dim, dim, dtype=torch.float64)
        self.count = 0

    def add(self, keys: torch.Tensor) -> None:
        k = keys.detach().reshape(-1, keys.shape[-1]).to("cpu", torch.float64)
        self.sum += k.T @ k
        self.count += k.shape[0]

    @property
    def value(self) -> torch.Tensor:
        if self.count == 0:
            raise ValueError("no keys were added: the second moment of an empty set is undefined")
        return self.sum / self.count


def with_ridge(C: torch.Tensor, ridge: float) -> torch.Tensor:
    """C + ridge · (mean eigenvalue of C) · I."""
    d = C.shape[0]
    return C + ridge * (torch.trace(C) / d) * torch.eye(d, dtype=C.dtype, device=C.device)


def rank_one_update(W: torch.Tensor, C: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """ΔW (W's shape and dtype) with (W + ΔW) key = value, minimal in the C-metric over keys.

    W `[d_out, d_in]`, C `[d_in, d_in]` (symmetric positive definite: add a ridge first), key `[d_in]`,
    value `[d_out]`."""
    W64, C64 = W.detach().to("cpu", torch.float64), C.to("cpu", torch.float64)
    k, v = key.detach().to("cpu", torch.float64), value.detach().to("cpu", torch.float64)
    u = torch.linalg.solve(C64, k)  # C⁻¹ k*
    denom = torch.dot(u, k)
    if not denom > 0:
        raise ValueError(f"k*ᵀ C⁻¹ k* = {float(denom):.3g} is not positive: C is not positive definite (add a ridge)")
    delta = torch.outer(v - W64 @ k, u) / denom
    return delta.to(W.device, W.dtype)


def reach(C: torch.Tensor, key: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """How much of the edit another key receives: (kᵀ C⁻¹ k*) / (k*ᵀ C⁻¹ k*), so (W + ΔW) k = W k + reach·(v* − W k*).
    1 for k* itself, 0 for keys C⁻¹-orthogonal to it. `other`: `[d_in]` or `[n, d_in]`."""
    C64 = C.to("cpu", torch.float64)
    u = torch.linalg.solve(C64, key.detach().to("cpu", torch.float64))
    return (other.detach().to("cpu", torch.float64) @ u) / torch.dot(u, key.detach().to("cpu", torch.float64))


def relative_norm(delta: torch.Tensor, W: torch.Tensor) -> float:
    """‖ΔW‖_F / ‖W‖_F."""
    return float(delta.detach().double().norm() / W.detach().double().norm())
