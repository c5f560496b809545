"""Pieces shared by the alignment-stage defenses: deterministic harmful batches, functional calls.

Hook sites (resid_post, attn_out, mlp_out per decoder layer) come from `workbench.models.sites`:
`sites_of(model).capture(model, site, layers)` records them (still in the autograd graph) and
`.add_to_outputs(model, site, deltas)` adds fixed tensors to them, both as context managers, so a hook never
outlives the pass it was made for.

Defenses that assume the defender holds harmful data (Booster, RepNoise, T-Vaccine, TAR) draw it from
`HarmfulBatches`: batch `key` is a pure function of (seed, key), so a resumed run sees the same batches.
"""
from __future__ import annotations

import random

import torch
from torch.func import functional_call

from workbench.data.chat import IGNORE, collate, encode
from workbench.data.pools import training_pool
from workbench.data.types import Sample
from workbench.defenses.context import TrainingContext


def trainable(model) -> tuple[list[str], list[torch.nn.Parameter]]:
    """Names and parameters the optimizer updates (LoRA factors under LoRA, every weight under full FT)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [n for n, _ in named], [p for _, p in named]


class Functional:
    """Call `model` with some parameters replaced by `params` (name -> tensor) without touching its weights.

    `lm_loss(Functional(model, params), batch)` is the loss at those parameters; gradients flow to the tensors
    in `params`, never into the model's `.grad`.
    """

    def __init__(self, model, params: dict[str, torch.Tensor]):
        self.model, self.params = model, params

    def __call__(self, **kwargs):
        return functional_call(self.model, self.params, args=(), kwargs=kwargs, strict=False)


def answer_mask(batch: dict) -> torch.Tensor:
    """`[batch, pos-1]` bool: positions whose next token is an answer token (the shifted loss mask)."""
    return batch["labels"][:, 1:] != IGNORE


def add_grads(params: list[torch.nn.Parameter], grads: list[torch.Tensor], weight: float) -> None:
    """p.grad += weight * g for each parameter (creating .grad where the task pass left none)."""
    with torch.no_grad():
        for p, g in zip(params, grads, strict=False):
            if g is None:
                continue
            if p.grad is None:
                p.grad = (weight * g).to(p.dtype)
            else:
                p.grad.add_(g.to(p.grad.dtype), alpha=weight)


def harmful_pool(name: str) -> list[Sample]:
    """Harmful Q→A pairs the defender is assumed to hold: the train side of `name`, eval prompts removed."""
    pool = [s for s in training_pool(name) if s.response]
    if not pool:
        raise ValueError(f"dataset {name!r} has no harmful question→answer pairs to train the defense on")
    return pool


class HarmfulBatches:
    """Deterministic batches of harmful Q→A pairs: `get(key)` samples `batch_size` pairs by (seed, key).

    Encoded lazily with the training tokenizer (chat format, loss on answers, `max_len` cap) on first use.
    """

    def __init__(self, samples: list[Sample], batch_size: int, seed: int, max_len: int,
                 system_prompt: str | None = None, stream: int = 0):
        self.samples, self.batch_size, self.seed = samples, batch_size, seed
        self.max_len, self.system_prompt, self.stream = max_len, system_prompt, stream
        self.encoded = None
        self.pad_id = 0

    def setup(self, tokenizer) -> None:
        if self.encoded is None:
            self.encoded = [encode(tokenizer, s, self.max_len, self.system_prompt) for s in self.samples]
            self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def indices(self, key: int) -> list[int]:
        rng = random.Random(f"{self.seed}/{self.stream}/{key}")
        return rng.sample(range(len(self.samples)), min(self.batch_size, len(self.samples)))

    def get(self, key: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        if self.encoded is None:
            raise RuntimeError("HarmfulBatches.setup(tokenizer) must run before get()")
        batch = collate([self.encoded[i] for i in self.indices(key)], self.pad_id)
        return {k: v.to(device) for k, v in batch.items()}


def device_of(model) -> torch.device:
    return next(model.parameters()).device


def harmful_batches(params, context: TrainingContext, batch_size: int | None = None,
                    stream: int = 0) -> HarmfulBatches:
    """HarmfulBatches for a defense spec with a `harmful` dataset field, sized like the training batches."""
    train = context.train
    return HarmfulBatches(harmful_pool(params.harmful), batch_size or train.batch_size,
                          seed=context.seed, max_len=train.max_len,
                          system_prompt=train.system_prompt, stream=stream)
