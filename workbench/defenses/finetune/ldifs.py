"""LDIFS: ℓ2 distance in feature space to the aligned model (Mukhoti, Gal, Torr & Dokania, "Fine-tuning can
cripple your foundation model; preserving features may be the solution", TMLR 2024, arXiv:2308.13320; listed
as a fine-tuning-stage defense against harmful fine-tuning in Huang et al.'s survey, arXiv:2409.18169).

Fine-tuning forgets by moving the model's internal features. LDIFS keeps them close to the frozen starting
(here: the aligned) model on the fine-tuning inputs themselves:

    min_w  f(w) + λ · Σ_{l ∈ L}  d_l(x; w),
    d_l(x; w) = mean_{tokens t of x}  ‖φ_l(x; w)_t − φ_l(x; w_aligned)_t‖² / d_model

f = the task (LM) loss on the user's batch x; φ_l = `hidden_states[l]` of the HF forward pass
(`[batch, pos, d_model]`): l = 1..L−1 are the outputs of decoder layers 0..L−2 and l = L is the last layer's
output after the final norm, as HF returns them (l = 0, the embeddings, is left out by default). Tokens are
every non-padding position of prompt + answer (`tokens="all"`) or only the positions that predict answer
tokens (`tokens="answer"`). w_aligned is a frozen copy of `context.model`, so d_l = 0 at w = w_aligned.

Deviation to know: the paper concatenates the features of all blocks of an image encoder into one vector per
input; we average over token positions and divide by d_model (a per-element mean squared distance) so that λ
does not scale with sequence length or width. λ = 1 is our default, not tuned: the paper's λ (for CLIP
features with its own normalisation) does not transfer.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from workbench.config import Spec
from workbench.defenses.context import TrainingContext
from workbench.defenses.finetune.common import device_of, dtype_of, reference_model
from workbench.training.plugins import TrainPlugin, TrainState


class LDIFSParams(Spec):
    lamb: float = Field(1.0, ge=0)  # λ: weight of the feature-distance regulariser
    layers: list[int] | None = None  # indices into hidden_states (1..L); None = all of 1..L
    tokens: Literal["all", "answer"] = "all"  # positions the distance is averaged over


def token_mask(batch: dict, tokens: str) -> torch.Tensor:
    """`[batch, pos]` float: 1 where the feature distance counts."""
    if tokens == "all":
        return batch["attention_mask"].float()
    mask = torch.zeros_like(batch["labels"], dtype=torch.float)
    mask[:, :-1] = (batch["labels"][:, 1:] != -100).float()  # position t predicts answer token t+1
    return mask


def feature_distance(hidden: tuple, ref_hidden: tuple, mask: torch.Tensor, layers: list[int]) -> torch.Tensor:
    """Σ_l mean_t ‖h_l − h_l^ref‖² / d_model over the positions in `mask` (`[batch, pos]`)."""
    denom = mask.sum().clamp_min(1.0)
    total = hidden[layers[0]].new_zeros((), dtype=torch.float32)
    for layer in layers:
        diff = (hidden[layer].float() - ref_hidden[layer].float()).pow(2).mean(-1)  # [batch, pos]
        total = total + (diff * mask).sum() / denom
    return total


class LDIFSPlugin(TrainPlugin):
    name = "ldifs"
    needs_hidden_states = True

    def __init__(self, params: LDIFSParams, reference: str, report: dict | None = None):
        self.params, self.reference = params, reference
        self.ref = None
        self.report = report if report is not None else {}
        self.last: dict = {}

    def setup(self, model, tokenizer, state: TrainState) -> list:
        if self.ref is None:
            self.ref = reference_model(self.reference, device_of(model), dtype_of(model))
        return []

    def layers(self, n_hidden: int) -> list[int]:
        layers = list(range(1, n_hidden)) if self.params.layers is None else list(self.params.layers)
        bad = [layer for layer in layers if not 0 <= layer < n_hidden]
        if bad:
            raise ValueError(f"ldifs layers {bad} out of range: hidden_states has indices 0..{n_hidden - 1}")
        return layers

    def extra_loss(self, model, batch: dict, outputs, state: TrainState) -> torch.Tensor:
        with torch.no_grad():
            ref_out = self.ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               output_hidden_states=True, use_cache=False)
        layers = self.layers(len(outputs.hidden_states))
        dist = feature_distance(outputs.hidden_states, ref_out.hidden_states,
                                token_mask(batch, self.params.tokens), layers)
        self.last = {"feature_distance": dist.item(), "term": self.params.lamb * dist.item()}
        return self.params.lamb * dist

    def on_step_end(self, model, state: TrainState) -> None:
        self.report.update(last_feature_distance=self.last.get("feature_distance"))


def plugins(params: LDIFSParams, context: TrainingContext) -> list[TrainPlugin]:
    report = context.notes.setdefault("ldifs", {"lamb": params.lamb})
    return [LDIFSPlugin(params, str(context.model), report)]
