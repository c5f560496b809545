"""What a model "sees" of one training sample, as a unit vector: the features data selection compares samples by.

Two kinds, both of the sample's first `answer_tokens` answer tokens (the prompt is context only):

    gradient        the gradient of the sample's answer loss with respect to the weights of the linear sublayers
                    `targets` (default the LoRA targets q/k/v/o_proj) of the last `layers` decoder layers, each
                    projected to `rank` columns by a fixed random matrix A_k (rank × d_in), concatenated and
                    normalised. G_k·A_kᵀ is exactly the gradient a LoRA adapter's B matrix would get at
                    initialisation with A = A_k, and a Johnson–Lindenstrauss sketch of G_k: inner products of
                    sketches estimate those of the full weight gradients.
    representation  the final hidden state averaged over those answer tokens, normalised.

Why only the last layers' gradients: backward then stops at the earliest hooked layer, so a sample costs one forward
pass plus a few layers of backward (measured costs: docs/calibration.md), and the sketch of 4 layers × 4 projections
is 49,152 numbers for SmolLM2 rather than the 135 M of the full gradient.

Why per-sample gradients in a batch: the batch loss is the *sum* of each sample's mean answer loss, so the gradient
at sample i's sublayer outputs dY_i is its own; with its inputs X_i the weight gradient is dY_iᵀ X_i, and its sketch
dY_iᵀ (X_i A_kᵀ), computed from hooked activations without materialising any per-sample weight gradient. Right
padding keeps each row exact: padded positions come after a row's tokens and carry no loss.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F

from workbench.data.batching import sorted_batches
from workbench.data.chat import IGNORE, Encoded, collate, encode
from workbench.data.types import Sample
from workbench.models.sites import sites_of

Feature = Literal["gradient", "representation"]


def encode_answer_start(tokenizer, samples: Sequence[Sample], answer_tokens: int, max_len: int,
                        system: str | None = None) -> list[Encoded]:
    """Chat-encode each sample and cut it after its first `answer_tokens` answer tokens: a causal model's features
    of those tokens do not depend on what follows them, so the cut saves compute and changes nothing else."""
    out = []
    for s in samples:
        e = encode(tokenizer, s, max_len, system)
        first = next(i for i, label in enumerate(e.labels) if label != IGNORE)
        end = first + answer_tokens
        out.append(Encoded(e.input_ids[:end], e.labels[:end]))
    return out


@contextmanager
def frozen(model) -> Iterator[None]:
    """No parameter requires grad while active (backward stops at the hooked activations); flags restored after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def answer_losses(model, batch: dict) -> torch.Tensor:
    """Each row's mean cross-entropy on its answer tokens, `[batch]`. The LM head runs only from the first
    answer-predicting column on (`logits_to_keep`), as in the training loop's loss."""
    labels = batch["labels"][:, 1:]  # labels[:, j] is the token position j predicts
    answer_cols = (labels != IGNORE).any(0).nonzero()
    start = int(answer_cols[0]) if len(answer_cols) else 0
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                logits_to_keep=batch["input_ids"].shape[1] - start)
    targets = F.pad(labels[:, start:], (0, 1), value=IGNORE)
    ce = F.cross_entropy(out.logits.float().transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
    return ce.sum(1) / (targets != IGNORE).sum(1).clamp(min=1)


class GradientSketch:
    """Per-sample sketched weight gradients of chosen linear sublayers (see the module docstring)."""

    def __init__(self, model, targets: Sequence[str], layers: int, rank: int, seed: int):
        sites = sites_of(model)
        self.layers = list(range(max(0, sites.n_layers - layers), sites.n_layers))
        self.modules = {f"{layer}.{t}": sites.module(model, t, layer) for layer in self.layers for t in targets}
        generator = torch.Generator().manual_seed(seed)
        self.projections = {key: torch.randn(rank, m.in_features, generator=generator) / rank ** 0.5
                            for key, m in self.modules.items()}
        self.dim = sum(rank * m.out_features for m in self.modules.values())

    def __call__(self, model, batch: dict) -> torch.Tensor:
        inputs: dict[str, torch.Tensor] = {}
        outputs: dict[str, torch.Tensor] = {}

        def keeper(key):
            def hook(module, args, output):
                inputs[key] = args[0].detach()
                if not output.requires_grad:  # an early layer's output under frozen weights: make it a leaf
                    output.requires_grad_(True)
                outputs[key] = output
                return output
            return hook

        handles = [m.register_forward_hook(keeper(k)) for k, m in self.modules.items()]
        try:
            with frozen(model), torch.enable_grad():
                loss = answer_losses(model, batch).sum()
                grads = torch.autograd.grad(loss, [outputs[k] for k in self.modules], allow_unused=True)
        finally:
            for h in handles:
                h.remove()
        parts = []
        for key, dy in zip(self.modules, grads, strict=True):
            x = inputs[key]
            a = self.projections[key].to(x.device, x.dtype)
            dy = x.new_zeros(*x.shape[:2], self.modules[key].out_features) if dy is None else dy
            parts.append(torch.einsum("bto,btr->bor", dy.float(), (x @ a.T).float()).flatten(1))
        return F.normalize(torch.cat(parts, 1), dim=1)


def mean_answer_state(model, batch: dict) -> torch.Tensor:
    """The final hidden state averaged over each row's answer tokens, normalised: `[batch, d_model]`."""
    with torch.inference_mode():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                    output_hidden_states=True, logits_to_keep=1)
    hidden = out.hidden_states[-1].float()
    mask = (batch["labels"] != IGNORE).unsqueeze(-1).float()
    return F.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=1)


def iter_features(model, encoded: Sequence[Encoded], featurize, pad_id: int, batch_size: int
                  ) -> Iterator[tuple[list[int], torch.Tensor]]:
    """(indices, unit features `[len(indices), dim]`) per length-sorted batch of `encoded`."""
    device = next(model.parameters()).device
    for idx in sorted_batches([len(e) for e in encoded], batch_size):
        batch = {k: v.to(device) for k, v in collate([encoded[i] for i in idx], pad_id).items()}
        yield idx, featurize(model, batch).cpu()
