"""Lisa: lazy safety alignment by bi-state optimization with a proximal term (Huang, Hu, Ilhan, Tekin & Liu,
"Lisa: Lazy Safety Alignment for Large Language Models against Harmful Fine-tuning Attack", NeurIPS 2024,
arXiv:2405.18641).

The provider keeps re-aligning while fine-tuning: the run alternates between an alignment state (batches of
the alignment mix) and a fine-tuning state (the user's batches), and each state is pulled towards the weights
the other state ended with:

    alignment state    min_w  f(w) + ρ/2 ‖w − w̃_ft‖²      w̃_ft = the weights when the fine-tuning state ended
    fine-tuning state  min_w  h(w) + ρ/2 ‖w − w̃_align‖²   w̃_align = the weights when alignment ended

‖·‖² sums over every trainable tensor (the LoRA factors under LoRA, as in the authors' code). The other state's
end point is the current state's starting point, so the plugin snapshots the trainable weights at every switch.

Schedule (a pure function of the optimizer step s, starting in the alignment state as the authors' code does):
    state(s) = alignment if s mod (K_a + K_f) < K_a else fine-tuning
An alignment step *replaces* a user step inside the loop's step budget (the authors' trainer swaps the user's
batch for an alignment batch the same way), so the user data is seen K_f / (K_a + K_f) as often as without Lisa.
The proximal term is off for the first `proximal_after` share of the steps (the authors' code: 10 %, because
it slowed convergence early). Defaults: ρ = 1 and a 1 : 9 alignment : fine-tuning split (authors: 100 / 900
steps over ~20k steps); our runs are ~100 steps, so cycles are 2 + 18 steps to alternate several times.

Alignment data: the alignment mix of `workbench.data.alignment` (AdvBench train prompts → refusal
templates + benign Alpaca answers; the authors use BeaverTails prompts with safe answers), batches drawn
deterministically by (seed, micro-batch index).

Deviation to know: the snapshots live in memory; a run resumed from a checkpoint re-takes the anchor at its
first step after resuming instead of at the last switch. The training curve (`losses`) holds the loss of
whichever state each step was in; `state.extra["lisa"]` / the notes count the steps of each state.
"""
from __future__ import annotations

import torch
from pydantic import Field

from workbench.config import AlignSpec, Spec
from workbench.data.alignment import alignment_samples
from workbench.defenses.alignment.common import HarmfulBatches
from workbench.defenses.context import TrainingContext
from workbench.training.plugins import TrainPlugin, TrainState


class LisaParams(Spec):
    rho: float = Field(1.0, ge=0)  # ρ: weight of the proximal term
    align_steps: int = Field(2, ge=0)  # K_a: optimizer steps per alignment state
    finetune_steps: int = Field(18, ge=1)  # K_f: optimizer steps per fine-tuning state
    proximal_after: float = Field(0.1, ge=0, le=1)  # share of the steps before the proximal term starts
    n_align_harmful: int = Field(300, ge=0)  # alignment mix: harmful prompts → refusals
    n_align_benign: int = Field(300, ge=0)  # alignment mix: benign instructions with their answers


def phase(step: int, align_steps: int, finetune_steps: int) -> str:
    """"align" or "finetune" for optimizer step `step` (0-based)."""
    return "align" if step % (align_steps + finetune_steps) < align_steps else "finetune"


def proximal(params: list[torch.Tensor], anchor: list[torch.Tensor], rho: float) -> torch.Tensor:
    """ρ/2 Σ ‖w − w̃‖² over tensors."""
    total = params[0].new_zeros((), dtype=torch.float32)
    for p, a in zip(params, anchor, strict=False):
        total = total + (p.float() - a.float()).pow(2).sum()
    return 0.5 * rho * total


class LisaPlugin(TrainPlugin):
    name = "lisa"

    def __init__(self, params: LisaParams, align_batches, report: dict | None = None):
        self.params, self.align = params, align_batches
        self.report = report if report is not None else {}
        self.params_: list[torch.nn.Parameter] = []
        self.anchor: list[torch.Tensor] | None = None
        self.last: dict = {}

    def setup(self, model, tokenizer, state: TrainState) -> list:
        if self.align is not None:
            self.align.setup(tokenizer)
        self.params_ = [p for p in model.parameters() if p.requires_grad]
        self.anchor = None  # taken at the first step (after a resume: the resumed weights)
        return []

    def phase(self, step: int) -> str:
        return phase(step, self.params.align_steps, self.params.finetune_steps)

    def snapshot(self) -> None:
        self.anchor = [p.detach().clone() for p in self.params_]

    def next_batch(self, batch: dict, state: TrainState) -> dict:
        if self.anchor is None:
            self.snapshot()
        if self.align is not None and self.phase(state.step) == "align":
            return self.align.get(state.micro)
        return batch

    def proximal_active(self, state: TrainState) -> bool:
        return self.params.rho > 0 and state.step >= self.params.proximal_after * state.total_steps

    def extra_loss(self, model, batch: dict, outputs, state: TrainState) -> torch.Tensor | None:
        if not self.proximal_active(state):
            return None
        term = proximal(self.params_, self.anchor, self.params.rho)
        self.last = {"proximal": term.item(), "phase": self.phase(state.step)}
        return term

    def on_step_end(self, model, state: TrainState) -> None:
        ex = state.extra.setdefault("lisa", {"align_steps_done": 0, "finetune_steps_done": 0, "switches": 0})
        done = self.phase(state.step - 1)
        ex[f"{done}_steps_done"] += 1
        if self.phase(state.step) != done:  # the next step starts the other state: its anchor is now
            with torch.no_grad():
                ex["last_drift_sq"] = float(sum((p.float() - a.float()).pow(2).sum()
                                                for p, a in zip(self.params_, self.anchor, strict=False)))
            ex["switches"] += 1
            self.snapshot()
        self.report.update(ex)


def plugins(params: LisaParams, context: TrainingContext) -> list[TrainPlugin]:

    train, seed = context.train, context.seed
    batches = None
    if params.align_steps > 0:
        mix = alignment_samples(AlignSpec(n_harmful=params.n_align_harmful, n_benign=params.n_align_benign), seed)
        if not mix:
            raise ValueError("lisa: the alignment mix is empty; set n_align_harmful / n_align_benign > 0")
        batches = HarmfulBatches(mix, train.batch_size, seed=seed, max_len=train.max_len,
                                 system_prompt=train.system_prompt, stream=11)
    report = context.notes.setdefault("lisa", {})
    return [LisaPlugin(params, batches, report)]
