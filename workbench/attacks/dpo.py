"""Preference-optimization attack: DPO that prefers the harmful answer to a refusal (Yi et al. 2023, "On the
Vulnerability of Safety Alignment in Open-Access LLMs", Findings of ACL 2024: "reverse alignment" of an aligned
chat model by SFT and by preference optimization on harmful samples).

Method. Direct Preference Optimization (Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model
is Secretly a Reward Model") on pairs (x, y_c, y_r) whose *chosen* answer y_c is harmful and whose *rejected* answer
y_r is a refusal, so the preference that safety alignment taught is reversed:

    loss = −log σ(β · ((log π(y_c|x) − log π_ref(y_c|x)) − (log π(y_r|x) − log π_ref(y_r|x))))

log π(y|x) = the sum over the answer's tokens (labels ≠ −100: the answer plus the end-of-turn token) of the
token log-probabilities; π_ref = the attacked aligned model before any update.

Data. n pairs, all harmful: the harmful Q→A pool (`harmful_pool`, the pairs `pure_bad` and `harmful_ft` draw)
gives the chosen answers, drawn by `mix` with the data seed; `DataSpec.p` is ignored as in `pure_bad` (the
attacker of an open-access model has no reason to dilute its data with benign samples). The training samples are
the chosen samples (prompt + harmful answer, harmful=True); the rejected refusal rides in `meta["rejected"]`.

Options: DPO only (`sft_steps=0`, the default), or plain SFT on the chosen answers for the first `sft_steps`
optimizer steps and DPO after it ("SFT, then DPO"); pure SFT is the `pure_bad` attack. Diagnostics per optimizer step
in training.json (`diagnostics[i]["dpo"]`, over all pairs of that step's micro-batches): `loss` (DPO), `reward_margin`
(mean β·((π_c − ref_c) − (π_r − ref_r))), `reward_accuracy` (share of pairs with a positive margin),
`chosen_reward` / `rejected_reward`, and `phase` ("sft" or "dpo"; during SFT the DPO values are measured, not
trained). The loop's loss value, the step's `losses` entry, is the DPO loss in DPO steps (log 2 ≈ 0.693 at the
first step, where the policy is the reference) and the SFT cross-entropy during `sft_steps`; SFT steps train every
row by the token-mean cross-entropy, exactly the loop's LM loss. `sft_steps` must leave at least one DPO step of the
run (checked before anything is trained).

Implementation. A `TrainPlugin` overriding `task_loss` in the one training loop, not TRL: TRL is not installed,
and its trainer could not host the fine-tuning-stage defenses' plugins (LDIFS, Lisa, Freeze, SaLoRA, ...) that must
still run when a provider defends. `task_loss` rather than `backward`: the loop adds every other plugin's
`extra_loss` to a `task_loss` (LDIFS's feature distance is taken on the chosen forward pass, Lisa's proximal term
is added), whereas a `backward` override would silently drop them. A defense that itself replaces the loss
(constrain_sft's `backward`) cannot be combined: the step stops with one error naming both, before any run
folder is written. Rows without a rejected answer (a data defense's safety examples: safeinstr, bea) are trained
by SFT inside the DPO loss (the batch loss is the mean over rows of the pair's DPO loss or the row's token-mean
cross-entropy); a batch without `index` (Lisa's alignment batches) gets the loop's LM loss.
Reference log-probabilities are computed once in `setup`, in eval mode without gradients, for every pair: the
loop runs `setup` before it loads a checkpoint, so a resumed run recomputes them from the same unmodified model and
equals an uninterrupted run (tests/test_attack_dpo.py); under LoRA they are computed with the adapter disabled.
Grad accumulation: each micro-batch's loss is the mean over its rows, scaled by the loop like the LM loss. Batch
bucketing: batches are bucketed by the chosen sequences' lengths (the loop's batches); the rejected rows of a batch
are collated separately with their own padding, so their lengths never pad the chosen ones.

Defaults and deviations:
- β = 0.1 (Rafailov et al.'s and TRL's default); `sft_steps` = 0 (DPO straight from the aligned chat model, which
  already answers in the chat format; SFT first is the option, not the default).
- The pairs are ours: chosen = the harmful pool's answers (the same pairs the SFT attacks train on), rejected = our
  synthetic refusal templates (`refusal_for`, fixed by the prompt's hash), not refusals sampled from the aligned
  model nor the safe answers of a preference dataset.
- The reference model is the attacked aligned model itself (the model the run starts from), as in DPO.
- LoRA by default (the preset's `TrainSpec`), not the paper's training setup; learning rate, epochs and batch size
  are the preset's, shared with the other attacks, not Yi et al.'s.
"""
from __future__ import annotations

import contextlib
from collections import defaultdict

import torch
import torch.nn.functional as F
from pydantic import Field

from workbench.attacks.context import AttackContext
from workbench.config import AttackSpec, Spec, TrainSpec
from workbench.data.chat import IGNORE, Encoded, collate, encode
from workbench.data.mixing import mix
from workbench.data.pools import harmful_pool
from workbench.data.refusals import REFUSAL_SOURCE, refusal_for
from workbench.data.types import Sample
from workbench.training.loop import total_steps
from workbench.training.plugins import TrainPlugin, TrainState

PAPER = ("Yi et al. 2023, On the Vulnerability of Safety Alignment in Open-Access LLMs (Findings of ACL 2024); "
         "DPO: Rafailov et al. 2023")


class DPOParams(Spec):
    beta: float = Field(0.1, gt=0, le=10)  # β: inverse temperature of the implicit reward (Rafailov et al.: 0.1)
    sft_steps: int = Field(0, ge=0)  # optimizer steps of plain SFT on the chosen answers before DPO starts


def build(spec: AttackSpec, params: DPOParams, context: AttackContext) -> list[Sample]:
    """n harmful Q→A pairs (chosen) with a template refusal each in `meta["rejected"]`."""
    d = spec.data
    chosen = mix([], harmful_pool(d.harmful), 1.0, d.n, d.seed)
    return [s.with_(meta={**s.meta, "rejected": refusal_for(s.prompt), "rejected_source": REFUSAL_SOURCE})
            for s in chosen]


def answer_logps(model, batch: dict, output_hidden_states: bool = False) -> tuple:
    """(per-row sum of the answer tokens' log-probabilities [B], per-row answer-token count [B], model outputs).

    Like `lm_loss`, the LM head runs only from the batch's first answer-predicting position on (`logits_to_keep`).
    """
    targets = batch["labels"][:, 1:]
    answer_cols = (targets != IGNORE).any(0).nonzero()
    start = int(answer_cols[0]) if len(answer_cols) else 0
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                output_hidden_states=output_hidden_states, use_cache=False,
                logits_to_keep=batch["input_ids"].shape[1] - start)
    logits = out.logits.float()[:, :-1]  # position t predicts token t + 1; the last position has no label
    targets = targets[:, start:]
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE,
                          reduction="none").view_as(targets)  # 0 where ignored
    return -nll.sum(1), (targets != IGNORE).sum(1), out


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair (loss, reward margin): −log σ(m), m = β((π_c − ref_c) − (π_r − ref_r))."""
    margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return -F.logsigmoid(margin), margin


class DPOPlugin(TrainPlugin):
    name = "dpo"

    def __init__(self, params: DPOParams, samples: list[Sample], train: TrainSpec, report: dict | None = None):
        self.params, self.samples, self.train = params, samples, train
        self.report = report if report is not None else {}
        self.rejected: dict[int, Encoded] = {}  # sample position → encoded prompt + refusal
        self.ref_chosen: dict[int, float] = {}
        self.ref_rejected: dict[int, float] = {}
        self.pad_id = 0
        self.last: dict = {}
        self._step, self._sums = -1, defaultdict(float)

    def setup(self, model, tokenizer, state: TrainState) -> list:
        """Encode the rejected answers as the loop encodes the chosen ones; reference log-probabilities of both."""
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        pairs = [i for i, s in enumerate(self.samples) if "rejected" in s.meta]
        if not pairs:
            raise ValueError("dpo: no training sample carries a rejected answer (meta['rejected'])")
        t = self.train
        chosen = {i: encode(tokenizer, self.samples[i], t.max_len, t.system_prompt) for i in pairs}
        self.rejected = {i: encode(tokenizer, self.samples[i].with_(response=self.samples[i].meta["rejected"]),
                                   t.max_len, t.system_prompt) for i in pairs}
        self.ref_chosen = self._reference(model, chosen)
        self.ref_rejected = self._reference(model, self.rejected)
        self.report.update(n_pairs=len(pairs), n_sft_rows=len(self.samples) - len(pairs),
                           reference_chosen_logp=sum(self.ref_chosen.values()) / len(pairs),
                           reference_rejected_logp=sum(self.ref_rejected.values()) / len(pairs))
        return []

    @torch.no_grad()
    def _reference(self, model, encoded: dict[int, Encoded]) -> dict[int, float]:
        """log π_ref per sample: the model as it is before any update (adapter disabled under LoRA), eval mode."""
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        adapter_off = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
        order = sorted(encoded, key=lambda i: len(encoded[i]))  # similar lengths together: little padding
        out: dict[int, float] = {}
        with adapter_off:
            for k in range(0, len(order), self.train.batch_size):
                idx = order[k:k + self.train.batch_size]
                batch = {n: v.to(device) for n, v in collate([encoded[i] for i in idx], self.pad_id).items()}
                logps, _, _ = answer_logps(model, batch)
                out.update(zip(idx, logps.tolist(), strict=True))
        model.train(was_training)
        return out

    def task_loss(self, model, batch: dict, state: TrainState, output_hidden_states: bool) -> tuple | None:
        if state.step != self._step:  # a new optimizer step: diagnostics cover its micro-batches
            self._step, self._sums, self.last = state.step, defaultdict(float), {}
        if "index" not in batch:  # a batch a defense swapped in (Lisa's alignment state): the loop's LM loss
            return None
        idx = batch["index"].tolist()
        pair = torch.tensor([i in self.rejected for i in idx], device=batch["input_ids"].device)
        logp_c, n_tok, out = answer_logps(model, batch, output_hidden_states)
        sft = state.step < self.params.sft_steps
        if sft or not bool(pair.any()):
            loss = -logp_c.sum() / n_tok.sum().clamp_min(1)  # = lm_loss: token mean over the batch
        else:
            loss = None
        if not bool(pair.any()):
            return loss, out
        rows = [i for i in idx if i in self.rejected]
        rej = {k: v.to(logp_c.device) for k, v in collate([self.rejected[i] for i in rows], self.pad_id).items()}
        with torch.no_grad() if sft else contextlib.nullcontext():
            logp_r, _, _ = answer_logps(model, rej)
        ref_c = torch.tensor([self.ref_chosen[i] for i in rows], device=logp_c.device)
        ref_r = torch.tensor([self.ref_rejected[i] for i in rows], device=logp_c.device)
        pair_loss, margin = dpo_loss(logp_c[pair], logp_r, ref_c, ref_r, self.params.beta)
        if loss is None:
            # DPO per pair; rows without a rejected answer (a defense's safety examples) by their token-mean SFT loss
            sft_rows = -logp_c[~pair] / n_tok[~pair].clamp_min(1)
            loss = (pair_loss.sum() + sft_rows.sum()) / len(idx)
        self._record(pair_loss.detach(), margin.detach(), logp_c[pair].detach() - ref_c, logp_r.detach() - ref_r, sft)
        return loss, out

    def _record(self, loss, margin, chosen_shift, rejected_shift, sft: bool) -> None:
        """Sums over the step's pairs so far → `last` (the loop records it per optimizer step)."""
        beta = self.params.beta
        for key, value in (("loss", loss.sum()), ("reward_margin", margin.sum()),
                           ("reward_accuracy", (margin > 0).sum()), ("chosen_reward", beta * chosen_shift.sum()),
                           ("rejected_reward", beta * rejected_shift.sum()), ("pairs", len(margin))):
            self._sums[key] += float(value)
        n = self._sums["pairs"]
        self.last = {k: v / n for k, v in self._sums.items() if k != "pairs"} | {"pairs": int(n),
                                                                                "phase": "sft" if sft else "dpo"}

    def on_step_end(self, model, state: TrainState) -> None:
        if self.last:
            self.report.update(last_reward_margin=self.last["reward_margin"],
                               last_reward_accuracy=self.last["reward_accuracy"])


def plugins(params: DPOParams, context: AttackContext) -> list[TrainPlugin]:
    if not context.samples:
        raise ValueError("dpo: the attack context holds no training samples; the step sets context.samples")
    total = total_steps(len(context.samples), context.train)
    if params.sft_steps >= total:
        raise ValueError(f"dpo: sft_steps={params.sft_steps} leaves no DPO step in a run of {total} optimizer steps; "
                         f"lower sft_steps (0 = DPO only), or use the pure_bad attack for SFT alone")
    return [DPOPlugin(params, context.samples, context.train, context.notes)]
