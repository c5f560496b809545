"""The extension points of the one training loop.

A defense never copies the loop; it subclasses `TrainPlugin` and overrides what it needs:

- `setup(model, tokenizer, state)`  once, after LoRA wrapping; may return hook handles (e.g. forward
  hooks on chosen layers for Vaccine-style perturbations); the loop removes them at the end.
- `param_groups(named_params, lr)`  per-parameter-group learning rates or freezing (Freeze, ML-LR);
  return None to keep one group. Parameters left out of every group are frozen.
- `extra_loss(model, batch, outputs, state)`  a term added to the task loss (LDIFS, proximal terms).
  `outputs` is the task forward pass (with hidden states when `needs_hidden_states`).
- `task_loss(model, batch, state, output_hidden_states)`  replaces the task loss (`lm_loss`) by the plugin's own
  objective (DPO's preference loss); returns `(loss, outputs)`, `outputs` being the forward pass of the batch that
  the other plugins' `extra_loss` read, or None for the default on this batch. The loop still adds every
  `extra_loss` term and runs backward, so an attack's objective composes with a fine-tuning defense's regulariser
  (LDIFS, Lisa's proximal term), which a `backward` override would silently drop.
- `backward(model, batch, state, scale)`  replaces the whole gradient computation of a micro-batch
  (Vaccine's two passes, Booster's attack simulation); must accumulate `scale`-weighted gradients into
  `.grad` and return the task-loss value; no other plugin's `extra_loss` runs.
  At most one plugin may override `task_loss` or `backward` (`check_one_objective`).
- `next_batch(batch, state)`  swap or extend the batch (Lisa's alternating states, data mixing).
- `on_step_end(model, state)`  after each optimizer step (T-Vaccine layer resampling, Lisa switching).

Plugins must be deterministic functions of (seed, state.step) so a resumed run equals an uninterrupted one.

A plugin whose mechanism is not safe in bfloat16 sets `fp32_reason` (why, in a few words): the loop then trains the
whole run in float32 whatever `TrainSpec.dtype` asks (`workbench.precision`; Booster, Vaccine, T-Vaccine).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F


@dataclass
class TrainState:
    step: int = 0  # optimizer steps completed
    micro: int = 0  # micro-batches consumed (for resume)
    total_steps: int = 0
    losses: list[float] = field(default_factory=list)  # task loss per optimizer step
    tokens: int = 0  # answer tokens trained on
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # plugin bookkeeping (JSON-serialisable)
    # per optimizer step, each plugin's `last` dict (its own loss terms: Vaccine's perturbed loss, Booster's
    # regulariser, TAR's post-attack entropy, ...; the last micro-batch's under grad_accum): what shows whether a
    # defense's mechanism did anything, written to the run's training.json
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    dtype: str = "float32"  # the precision the loop trained in (TrainSpec.dtype, unless a plugin needs float32)


def lm_loss(model, batch: dict, output_hidden_states: bool = False):
    """Mean cross-entropy on answer tokens (labels != -100); returns (loss, outputs).

    Why `logits_to_keep`: the LM head runs only from the batch's first answer-predicting position on, so
    prompt positions cost neither head FLOPs nor [batch, pos, vocab] logit memory; labels are shifted
    instead of logits (no logits copy). `outputs.logits` covers those last positions only.
    """
    labels = batch["labels"][:, 1:]
    answer_cols = (labels != -100).any(0).nonzero()
    start = int(answer_cols[0]) if len(answer_cols) else 0
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                output_hidden_states=output_hidden_states, use_cache=False,
                logits_to_keep=batch["input_ids"].shape[1] - start)
    logits = out.logits.float()  # predicts positions start+1 .. pos; the last one has no label
    targets = F.pad(labels[:, start:], (0, 1), value=-100)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
    return loss, out


class TrainPlugin:
    name = "plugin"
    needs_hidden_states = False
    fp32_reason: str | None = None  # set: this plugin's mechanism needs float32, so the run trains in float32

    def setup(self, model, tokenizer, state: TrainState) -> list:
        return []

    def param_groups(self, named_params: list[tuple[str, torch.nn.Parameter]], lr: float) -> list[dict] | None:
        return None

    def next_batch(self, batch: dict, state: TrainState) -> dict:
        return batch

    def extra_loss(self, model, batch: dict, outputs, state: TrainState) -> torch.Tensor | None:
        return None

    def task_loss(self, model, batch: dict, state: TrainState, output_hidden_states: bool) -> tuple | None:
        return None  # None = lm_loss

    def backward(self, model, batch: dict, state: TrainState, scale: float) -> float | None:
        return None  # None = use the default backward

    def on_step_end(self, model, state: TrainState) -> None:
        pass

    def overrides_backward(self) -> bool:
        return type(self).backward is not TrainPlugin.backward

    def overrides_task_loss(self) -> bool:
        return type(self).task_loss is not TrainPlugin.task_loss


def check_one_objective(plugins) -> None:
    """ValueError unless at most one plugin replaces the training objective (`task_loss` or `backward`): two
    replacements cannot both be the loss, and running one would silently drop the other (an attack's own objective
    such as DPO under a defense that rewrites the loss such as constrain_sft)."""
    own = [p for p in plugins if p.overrides_task_loss() or p.overrides_backward()]
    if len(own) > 1:
        names = " and ".join(repr(p.name) for p in own)
        raise ValueError(f"{names} each replace the training loss (task_loss / backward) and cannot be combined: "
                         f"at most one plugin may; train them in separate runs")
