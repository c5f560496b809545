"""Ascent: safety alignment plus a gradient-ascent term on harmful answers, of a chosen kind
(`workbench.defenses.alignment.ascent_losses`: −CE, −log(1+CE), NPO, unlikelihood).

    L = f(θ)  +  weight · A_kind(θ; harmful Q→A batch)

f is the alignment loss on the alignment batch (refusals + benign answers); A_kind is one of the registered ascent
losses on a batch of harmful pairs the defender holds (`harmful_qa` train side, drawn by (seed, micro-batch) as for
RepNoise and TAR, so a resumed run sees the same batches). It is the question of the survey's Future Direction III
made one knob: the same alignment and data, only the shape of the ascent term changing.

NPO's reference π_ref is the model before the alignment update: under LoRA, the same model with its adapters
disabled (no copy); under full fine-tuning, a frozen copy of `context.model`.
"""
from __future__ import annotations

import contextlib

import torch
from pydantic import Field, field_validator

from workbench.config import Spec
from workbench.defenses.alignment.ascent_losses import ASCENT_LOSSES, IGNORE, answer_ce, get_ascent_loss
from workbench.defenses.alignment.common import HarmfulBatches, device_of, harmful_batches
from workbench.defenses.context import TrainingContext
from workbench.models import load_model
from workbench.training.plugins import TrainPlugin, TrainState


class AscentParams(Spec):
    kind: str = "npo"  # the ascent loss (ASCENT_LOSSES)
    weight: float = Field(0.1, ge=0)  # weight of the ascent term against the alignment loss
    beta: float = Field(0.1, gt=0)  # NPO's β (the paper's default); the other kinds ignore it
    harmful: str = "harmful_qa"  # dataset of harmful Q→A pairs
    harmful_batch_size: int | None = Field(None, ge=1)  # None = the training batch size

    @field_validator("kind")
    @classmethod
    def _known(cls, v: str) -> str:
        get_ascent_loss(v)
        return v


def shifted(logits: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits[:, :-1], labels[:, 1:]): position t predicts label t, as the ascent losses take them."""
    return logits[:, :-1], batch["labels"][:, 1:]


def answer_logits(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) aligned as the ascent losses take them, from the first answer-predicting position on
    (`logits_to_keep`, as the loop's `lm_loss`: prompt positions cost no LM-head FLOPs nor logit memory)."""
    labels = batch["labels"][:, 1:]
    answer_cols = (labels != IGNORE).any(0).nonzero()
    start = int(answer_cols[0]) if len(answer_cols) else 0
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                logits_to_keep=batch["input_ids"].shape[1] - start)
    return out.logits[:, :-1], labels[:, start:]


def is_lora(model) -> bool:
    from peft import PeftModel  # deferred: peft

    return isinstance(model, PeftModel)


class AscentPlugin(TrainPlugin):
    name = "ascent"

    def __init__(self, params: AscentParams, harmful: HarmfulBatches, reference: str):
        self.params, self.harmful, self.reference = params, harmful, reference
        self.loss = get_ascent_loss(params.kind)
        self.ref = None  # a frozen copy of the base model, only for NPO under full fine-tuning
        self.last: dict = {}

    def setup(self, model, tokenizer, state: TrainState) -> list:
        self.harmful.setup(tokenizer)
        if self.loss.needs_reference and not is_lora(model) and self.ref is None:
            dtype = next(model.parameters()).dtype
            self.ref, _ = load_model(self.reference, device=device_of(model), dtype=dtype)
            self.ref.requires_grad_(False).eval()
        return []

    def reference_logits(self, model, batch: dict) -> torch.Tensor:
        """π_ref's logits: the model before the alignment update (LoRA disabled, or the frozen copy)."""
        ref = self.ref if self.ref is not None else model
        adapters_off = model.disable_adapter() if self.ref is None else contextlib.nullcontext()
        with torch.no_grad(), adapters_off:
            return answer_logits(ref, batch)[0]

    def extra_loss(self, model, batch: dict, outputs, state: TrainState) -> torch.Tensor:
        p = self.params
        hb = self.harmful.get(state.micro, device_of(model))
        logits, labels = answer_logits(model, hb)
        ref = self.reference_logits(model, hb) if self.loss.needs_reference else None
        term = self.loss.fn(logits, labels, ref, beta=p.beta)
        self.last = {"ascent": term.item(), "harmful_ce": answer_ce(logits.detach(), labels).item()}
        return p.weight * term


def plugins(params: AscentParams, context: TrainingContext) -> list[TrainPlugin]:
    return [AscentPlugin(params, harmful_batches(params, context, params.harmful_batch_size), str(context.model))]


KINDS = tuple(ASCENT_LOSSES)
