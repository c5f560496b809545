"""Pieces shared by the fine-tuning-stage defenses.

- `reference_model(ref, device)`: a frozen copy of the aligned model (the attack step's `context.model`),
  for the defenses that compare against it (LDIFS, Constrain-SFT).
- `refusal_samples(n, seed)`: the safety examples SafeInstr / BEA / SaLoRA / Freeze's probe use — AdvBench
  TRAIN prompts (never an eval prompt of any dataset) answered with the refusal templates of
  `workbench.data.refusals`, exactly like the alignment mix.
- `matches(name, modules)`: whether a parameter lies in one of some module types, in plain
  (`model.layers.3.self_attn.q_proj.weight`) and LoRA (`base_model.model.model.layers.3.self_attn.
  q_proj.lora_A.default.weight`) naming alike. Decoder layers of names: `workbench.models.sites.layer_of`.
"""
from __future__ import annotations

import random

import torch

from workbench.data.pools import training_pool
from workbench.data.refusals import REFUSAL_SOURCE, refusal_for
from workbench.data.types import Sample
from workbench.models import load_model


def reference_model(ref: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None):
    """The aligned model `ref` (registered name, HF folder or run folder), frozen, in eval mode."""
    model, _ = load_model(ref, device=device, dtype=dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def device_of(model) -> torch.device:
    return next(model.parameters()).device


def dtype_of(model) -> torch.dtype:
    return next(model.parameters()).dtype


def refusal_samples(n: int, seed: int, system: str | None = None, source: str = "safety") -> list[Sample]:
    """`n` distinct AdvBench train prompts, each answered with a template refusal, drawn by `seed`.

    `harmful=True` keeps the Sample convention (the *request* is harmful); `meta["safety_example"]` marks
    them so reports can tell them from the user's harmful Q→A pairs.
    """
    if n <= 0:
        return []
    pool = training_pool("advbench")
    if n > len(pool):
        raise ValueError(f"asked for {n} safety examples but only {len(pool)} AdvBench training prompts exist")
    rng = random.Random(f"safety/{seed}")
    return [s.with_(response=refusal_for(s.prompt, rng), harmful=True, system=system, source=source,
                    meta={**s.meta, "safety_example": True, "response_source": REFUSAL_SOURCE})
            for s in rng.sample(pool, n)]


def matches(name: str, modules: list[str] | None) -> bool:
    """Whether `name` lies in one of `modules` (dotted name components: "q_proj", "self_attn", "mlp",
    "embed_tokens", "lm_head", ...); None matches everything."""
    if modules is None:
        return True
    padded = f".{name}."
    return any(f".{m}." in padded for m in modules)

