"""Low-rank weight deltas: a LoRA-trained model stored as `base + Σ left @ right`, a small fraction of the size of
the full weights (the SmolLM2 delta size is in docs/defenses-alignment.md).

Why: run folders keep merged weights (every consumer loads a plain model), which are too large to keep beyond
the machine that trained them. A LoRA run's change to each weight matrix has rank ≤ r (≤ r₁ + r₂ for a LoRA phase
on top of another), so a truncated SVD of `W_run − W_base` recovers it to float precision; `load_model` reads
such a folder as base + delta (see registry.py). Full fine-tuning changes are not low-rank and are refused.

Folder: `lowrank_delta.safetensors` (`<param>.left` [d_out, k], `<param>.right` [k, d_in], float32) +
`base_model.json` {"base": "<registered model name>"}; the tokenizer is the base's.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

LOWRANK_FILE = "lowrank_delta.safetensors"
BASE_REFERENCE_FILE = "base_model.json"  # {"base": ...}: what a delta (or a LoRA adapter) applies to


def lowrank_delta(model, base, max_rank: int = 64, rtol: float = 1e-5, atol: float = 1e-5) -> tuple[dict, dict]:
    """Factors {name.left, name.right} with W_model ≈ W_base + left @ right for every changed parameter, and a
    report {"tensors", "max_rank", "max_abs_error"}. Raises ValueError for a change that is not low-rank
    (full fine-tuning, a changed bias / norm / embedding row set) or a parameter missing from `base`."""
    own, ref = dict(model.named_parameters()), dict(base.named_parameters())
    factors, ranks, worst = {}, {}, 0.0
    for name, w in own.items():
        if name not in ref or ref[name].shape != w.shape:
            raise ValueError(f"{name}: not in the base model with the same shape; is it the model's base?")
        delta = w.detach().double() - ref[name].detach().double()
        if not torch.any(delta):
            continue
        if delta.dim() != 2:
            raise ValueError(f"{name} ({tuple(delta.shape)}) changed: only weight matrices can be stored low-rank")
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        # Singular values under 0.1 · atol are float32 rounding of the merge (full rank, ~1e-7 for SmolLM2): a
        # purely relative cut would count that noise as rank when the LoRA change to a matrix is tiny.
        k = int((s > max(rtol * float(s[0]), 0.1 * atol)).sum())
        left, right = u[:, :k] * s[:k], vh[:k]
        err = (delta - left @ right).abs().max().item()
        if k > max_rank or err > atol:
            raise ValueError(f"{name}: the change has rank {k} (max error {err:.2e} at rank ≤ {max_rank}), not a "
                             f"low-rank (LoRA) update; full fine-tuning runs cannot be stored as a low-rank delta")
        worst = max(worst, err)
        if k == 0:  # the whole change is below atol: nothing to store
            continue
        factors[f"{name}.left"], factors[f"{name}.right"] = left.float().contiguous(), right.float().contiguous()
        ranks[name] = k
    return factors, {"tensors": len(ranks), "max_rank": max(ranks.values(), default=0), "max_abs_error": worst}


def save_lowrank(factors: dict, base: str, folder: str | Path) -> Path:
    """Write a low-rank model folder (factors + base reference) into `folder` (created)."""
    from safetensors.torch import save_file  # deferred: safetensors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(factors, str(folder / LOWRANK_FILE))
    (folder / BASE_REFERENCE_FILE).write_text(json.dumps({"base": base}, indent=2))
    return folder


@torch.no_grad()
def apply_lowrank(model, factors: dict) -> None:
    """W += left @ right for every parameter named in `factors`, in place."""
    params = dict(model.named_parameters())
    names = {k.rsplit(".", 1)[0] for k in factors}
    missing = sorted(n for n in names if n not in params)
    if missing:
        raise ValueError(f"the low-rank delta names parameters the base model lacks: {missing[:3]}")
    for n in names:
        p = params[n]
        p.add_((factors[f"{n}.left"].double() @ factors[f"{n}.right"].double()).to(p.dtype))

