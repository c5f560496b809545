"""Antidote: prune the weights that matter most on harmful data, after fine-tuning (Huang, Bhattacharya,
Joshi, Kimball & Liu, "Antidote: Post-fine-tuning Safety Alignment for Large Language Models against Harmful
Fine-tuning", arXiv:2408.09600; code github.com/git-disl/Antidote).

Whatever the fine-tuning did, the weights it made responsible for harmful answers are those with the largest
Wanda importance on harmful data; zeroing them removes the behaviour. Top to bottom (all scoring, selection and
pruning is `workbench.models.pruning`, shared with the Wanda analysis `workbench.analysis.wanda`):
  1. data      `n_calibration` harmful Q → harmful A pairs (training-side pool `harmful_qa`, never an eval
               prompt), chat-formatted; optional utility set: Alpaca Q → A
  2. score     Wanda on the fine-tuned (merged) model: S_ij = |W_ij| · ‖X_j‖₂ over all non-pad tokens
  3. select    top `dense_ratio` of S within each output row (`group="row"`, the authors' per-row sort) or
               each matrix; with `utility_ratio` > 0 minus the top `utility_ratio` on Alpaca (Wei et al.'s set
               difference: keep weights that utility needs)
  4. prune     `pruning.prune` zeroes exactly that mask and returns a `PruneRecord` (flat indices + original
               values per tensor), saved as `prune.safetensors` in the repair run folder

Adaptation (documented in docs/defenses-post.md): the authors score and prune the LoRA matrices A and B of
the fine-tuning adapter (their full-fine-tuning branch: the q/k/v weights), with dense_ratio = 0.1 per row.
Our attack runs save merged weights, so we prune merged weights of the modules the fine-tuning adapted: the
attack run's LoRA targets (`modules` = None), or q/k/v for a full fine-tune or an unknown model. 10 % of merged
weights is a far larger cut than 10 % of a rank-r adapter's entries: expect a utility (FA) and coherence
(HS+) cost, and lower `dense_ratio` (e.g. 0.01) for a gentler repair. Calibration is 64 samples, not 2000.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from workbench.analysis.safety_metric import batches_of, calibration_samples
from workbench.config import Spec
from workbench.defenses.post.common import RepairContext, RepairResult
from workbench.models import load_model
from workbench.models.pruning import prune, set_difference, top_fraction, wanda_scores

FULL_FT_MODULES = ["q_proj", "k_proj", "v_proj"]  # the authors' full-fine-tuning scope


class AntidoteParams(Spec):
    dense_ratio: float = Field(0.1, gt=0, le=1)  # share of each row (or matrix) pruned
    utility_ratio: float = Field(0.0, ge=0, le=1)  # > 0: spare the top share on Alpaca (set difference)
    group: Literal["row", "matrix"] = "row"
    modules: list[str] | None = None  # None: the modules the fine-tuning adapted (see docstring)
    n_calibration: int = Field(64, ge=1)
    max_len: int = Field(128, ge=8)
    batch_size: int = Field(8, ge=1)
    tokens: Literal["all", "answer"] = "all"


def repair(params: AntidoteParams, ctx: RepairContext) -> RepairResult:

    model, tok = load_model(ctx.attacked)
    modules = params.modules or ctx.adapted_modules or FULL_FT_MODULES

    def scores(kind: str):
        batches = batches_of(tok, calibration_samples(kind, params.n_calibration, ctx.seed), params.max_len,
                             params.batch_size)
        return wanda_scores(model, batches, modules, params.tokens, ctx.progress)

    harmful = scores("harmful")
    if params.utility_ratio > 0:
        mask = set_difference(harmful, scores("utility"), params.dense_ratio, params.utility_ratio, params.group)
    else:
        mask = {n: top_fraction(s, params.dense_ratio, params.group) for n, s in harmful.items()}
    record = prune(model, mask)
    n_scored = sum(m.numel() for m in mask.values())
    report = {"modules": list(modules), "n_pruned": record.n_zeroed, "n_scored": n_scored,
              "pruned_fraction": record.n_zeroed / max(n_scored, 1),
              "per_tensor": {n: int(i.numel()) for n, i in record.indices.items()}}
    return RepairResult(model, tok, report, files={"prune.safetensors": record.save})
