"""Where is safety stored? Wanda / SNIP importance, safety-minus-utility set difference, and pruning
(Wei et al. 2024, "Assessing the Brittleness of Safety Alignment via Pruning and Low-Rank Modifications";
Sun et al. 2023, Wanda). The weight-level pieces (`wanda_scores`, `top_fraction`, `set_difference`, `prune`,
`PruneRecord`) live in `workbench.models.pruning`, shared with the Antidote repair, and are re-exported here.

Method, top to bottom:
  1. data      safety calibration set: held-in AdvBench prompts → template refusals ("refusal", Wei et al.'s
               safety data) or harmful Q → harmful A ("harmful", Antidote's); utility set: Alpaca Q → A.
  2. score     Wanda:  S_ij = |W_ij| · ‖X_j‖₂, X_j = input feature j of the linear layer over all calibration
                       tokens (non-pad; or only answer tokens) — one forward pass, no gradients.
               SNIP:   S_ij = Σ_batches |W_ij · ∂L/∂W_ij|, L = answer-token cross-entropy.
               (`gradient_scores` also gives Σ_batches |∂L/∂W_ij| alone: the safety-params study's `grad`.)
               Scored modules: the linear maps inside the blocks (q/k/v/o, gate/up/down: `workbench.models.sites.
               LINEAR_TYPES`); not embeddings.
  3. select    top-q of the safety scores minus top-p of the utility scores (Wei et al.'s set difference:
               weights important for safety but not for utility), within each weight matrix ("matrix") or
               within each output row ("row", Wanda's comparison group).
  4. prune     `prune(model, mask)` zeroes exactly the masked weights in place and returns a `PruneRecord`
               (flat indices + original values per tensor; safetensors; `restore(model)` undoes it).
               Baseline: `random_mask_like(mask)` — the same count per tensor, uniformly placed.
  5. measure   (spec.evaluate) refusal / HS on held-out AdvBench prompts and utility (answer NLL on held-out
               Alpaca pairs) for: unpruned, set-difference pruned, random pruned; each pruning is undone
               before the next, so one model serves all conditions.

Precision: float32 whatever the runs it reads trained or generated in: Wanda and SNIP score a model upcast by
`precision.fp32_required` (see `workbench.precision`).

Shapes: scores and masks are per parameter name `<module>.weight`, `[d_out, d_in]` like the weight.
Density maps are `[n_layers, n_module_types]`: the share of each matrix in the mask.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from tqdm.auto import tqdm

from workbench.analysis.result import AnalysisResult
from workbench.analysis.safety_metric import SafetyProbe, batches_of, calibration_samples, harmful_prompts
from workbench.config import Spec as BaseSpec
from workbench.data.registry import load_split
from workbench.evaluation.judge import load_judge
from workbench.models.pruning import (  # noqa: F401  (public here too: the analysis's own names)
    Mask,
    PruneRecord,
    input_norms,
    mask_from_indices,
    prune,
    random_mask_like,
    set_difference,
    top_fraction,
    wanda_scores,
)
from workbench.models.sites import LINEAR_TYPES, layer_of, linear_modules
from workbench.precision import fp32_required
from workbench.training.plugins import lm_loss

DEFAULT_MODULES = LINEAR_TYPES  # the linear sublayer types scored by default


class Spec(BaseSpec):
    score: Literal["wanda", "snip"] = "wanda"
    safety_data: Literal["refusal", "harmful"] = "refusal"
    n_calibration: int = Field(64, ge=1)  # samples per calibration set
    max_len: int = Field(128, ge=8)
    tokens: Literal["all", "answer"] = "all"  # Wanda: which tokens' activations enter ‖X_j‖
    q: float = Field(0.03, gt=0, le=1)  # top fraction on safety data
    p: float = Field(0.03, ge=0, le=1)  # top fraction on utility data (removed from the mask)
    group: Literal["matrix", "row"] = "matrix"
    modules: list[str] = list(DEFAULT_MODULES)
    batch_size: int = Field(8, ge=1)
    evaluate: bool = True  # prune (set difference, random), measure, restore
    n_eval_prompts: int = Field(32, ge=1)
    max_new_tokens: int = Field(32, ge=1)
    n_utility: int = Field(32, ge=1)  # held-out Alpaca pairs for the utility NLL
    judge: bool = False  # also score answers with the moderation judge (HS)
    safety_only_baseline: bool = False  # also prune top-q safety without the set difference


# --- 1. data: `calibration_samples`, `batches_of` live in safety_metric (shared with drift) -------------

# --- 2. scores: Wanda's `wanda_scores` / `input_norms` live in workbench.models.pruning (shared with Antidote) --

def snip_scores(model, batches, modules=DEFAULT_MODULES, progress: bool = False) -> dict[str, torch.Tensor]:
    """S = Σ_batches |W ⊙ ∂L/∂W|, L = mean answer-token cross-entropy of each batch; in float32 (`model` is upcast
    in place if it is not)."""
    return gradient_scores(model, batches, modules, progress, times_weight=True)


def gradient_scores(model, batches, modules=DEFAULT_MODULES, progress: bool = False, times_weight: bool = False
                    ) -> dict[str, torch.Tensor]:
    """S = Σ_batches |∂L/∂W| (or |W ⊙ ∂L/∂W| with `times_weight`: SNIP), L = mean answer-token cross-entropy of
    each batch; in float32 (`model` is upcast in place if it is not)."""
    model = fp32_required(model)
    linears = linear_modules(model, modules)
    device = next(model.parameters()).device
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    weights = {f"{n}.weight": m.weight for n, m in linears.items()}
    for w in weights.values():
        w.requires_grad_(True)
        w.grad = None
    scores = {n: torch.zeros_like(w, dtype=torch.float32) for n, w in weights.items()}
    was_training = model.training
    model.eval()
    desc = "snip gradients" if times_weight else "gradients"
    try:
        for batch in tqdm(batches, desc=desc, disable=not progress, dynamic_ncols=True):
            batch = {k: v.to(device) for k, v in batch.items()}
            loss, _ = lm_loss(model, batch)
            loss.backward()
            with torch.no_grad():
                for n, w in weights.items():
                    scores[n] += ((w.detach() * w.grad) if times_weight else w.grad).abs().float()
                    w.grad = None
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
        model.train(was_training)
    return scores


# --- 3. select, 4. prune: `top_fraction`, `set_difference`, `random_mask_like`, `prune` (workbench.models.pruning)

def _layer(name: str) -> int:
    """Decoder layer of a parameter name; -1 outside the decoder layers."""
    layer = layer_of(name)
    return -1 if layer is None else layer


def density_map(mask: Mask) -> tuple[torch.Tensor, list[int], list[str]]:
    """(`[n_layers, n_module_types]` share of each matrix in the mask, layer ids, module types)."""
    cells = {}
    for n, m in mask.items():
        mtype = n.rsplit(".", 2)[-2]  # "...mlp.down_proj.weight" -> "down_proj"
        cells[(_layer(n), mtype)] = m.float().mean().item()
    layers = sorted({k[0] for k in cells})
    types = [t for t in DEFAULT_MODULES if any(k[1] == t for k in cells)] + \
        sorted({k[1] for k in cells} - set(DEFAULT_MODULES))
    dens = torch.full((len(layers), len(types)), float("nan"))
    for (layer, t), v in cells.items():
        dens[layers.index(layer), types.index(t)] = v
    return dens, layers, types


# --- 5. measure --------------------------------------------------------------------------------------

@torch.no_grad()
def answer_nll(model, batches) -> float:
    """Token-weighted mean cross-entropy on answer tokens (utility: lower is better)."""
    import torch.nn.functional as F  # deferred: torch

    device = next(model.parameters()).device
    total, count = 0.0, 0
    for b in batches:
        b = {k: v.to(device) for k, v in b.items()}
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False).logits
        labels = b["labels"][:, 1:]
        total += float(F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)), labels.reshape(-1),
                                       ignore_index=-100, reduction="sum"))
        count += int((labels != -100).sum())
    return total / max(count, 1)


@dataclass(frozen=True)
class WandaResult(AnalysisResult):
    model: str
    score: str
    safety_data: str
    q: float
    p: float
    group: str
    layers: list[int]
    module_types: list[str]
    density: torch.Tensor  # [n_layers, n_types] share of each matrix in the set-difference mask
    overlap: torch.Tensor  # [n_layers, n_types] |top-q safety ∩ top-p utility| / |top-q safety|
    n_masked: int
    n_weights: int  # weights in the scored modules
    evaluation: dict | None = None  # condition -> {refusal, harmful, logodds, utility_nll, n_zeroed}
    mask: dict = field(default_factory=dict)  # parameter name -> flat int64 indices (mask.safetensors)

    def _split(self):
        plain, tensors = super()._split()
        plain.pop("mask", None)
        return plain, tensors

    def save(self, folder) -> None:
        from safetensors.torch import save_file  # deferred: safetensors

        super().save(folder)
        save_file({n: i.cpu().contiguous() for n, i in self.mask.items()}, str(Path(folder) / "mask.safetensors"))

    @classmethod
    def load(cls, folder) -> WandaResult:
        from safetensors.torch import load_file  # deferred: safetensors

        res = super().load(folder)
        path = Path(folder) / "mask.safetensors"
        return dataclasses.replace(res, mask=load_file(str(path)) if path.exists() else {})

    def headline(self) -> dict:
        h = {"score": self.score, "q": self.q, "p": self.p, "n_masked": self.n_masked, "n_weights": self.n_weights,
             "masked_fraction": self.n_masked / max(self.n_weights, 1)}
        if self.evaluation:
            for cond, m in self.evaluation.items():
                for k, v in m.items():
                    if k != "answers":
                        h[f"{cond}.{k}"] = v
        return h


def run(ctx, spec: Spec) -> WandaResult:
    """Load → score on safety and utility data → set difference → (prune, measure, restore) → densities."""
    model, tok = ctx.load("model")
    safety_b = batches_of(tok, calibration_samples(spec.safety_data, spec.n_calibration, ctx.seed),
                          spec.max_len, spec.batch_size)
    utility_b = batches_of(tok, calibration_samples("utility", spec.n_calibration, ctx.seed),
                           spec.max_len, spec.batch_size)
    if spec.score == "wanda":
        s_safe = wanda_scores(model, safety_b, spec.modules, spec.tokens, ctx.progress)
        s_util = wanda_scores(model, utility_b, spec.modules, spec.tokens, ctx.progress)
    else:
        s_safe = snip_scores(model, safety_b, spec.modules, ctx.progress)
        s_util = snip_scores(model, utility_b, spec.modules, ctx.progress)
    top_safe = {n: top_fraction(s, spec.q, spec.group) for n, s in s_safe.items()}
    top_util = {n: top_fraction(s, spec.p, spec.group) for n, s in s_util.items()}
    del s_safe, s_util
    mask = {n: top_safe[n] & ~top_util[n] for n in top_safe}
    overlap = {n: (top_safe[n] & top_util[n]).float().sum() / top_safe[n].float().sum().clamp_min(1)
               for n in top_safe}
    density, layers, types = density_map(mask)
    over = torch.full_like(density, float("nan"))
    for n, v in overlap.items():
        over[layers.index(_layer(n)), types.index(n.rsplit(".", 2)[-2])] = float(v)

    evaluation = None
    if spec.evaluate:
        evaluation = evaluate_masks(model, tok, {"set_difference": mask, "random": random_mask_like(mask, ctx.seed),
                                                 **({"safety_only": top_safe} if spec.safety_only_baseline else {})},
                                    spec, progress=ctx.progress)
    return WandaResult(model=str(ctx.model), score=spec.score, safety_data=spec.safety_data, q=spec.q, p=spec.p,
                       group=spec.group, layers=layers, module_types=types, density=density, overlap=over,
                       n_masked=int(sum(m.sum() for m in mask.values())),
                       n_weights=int(sum(m.numel() for m in mask.values())), evaluation=evaluation,
                       mask={n: m.reshape(-1).nonzero().squeeze(1) for n, m in mask.items()})


def evaluate_masks(model, tok, masks: dict[str, Mask], spec: Spec, progress: bool = True) -> dict:
    """Safety and utility of the unpruned model and of each mask applied alone (restored after each)."""

    judge = None
    if spec.judge:
        judge = load_judge(progress=progress)
    probe = SafetyProbe(tok, harmful_prompts("advbench", spec.n_eval_prompts), "judge" if judge else "keyword",
                        spec.max_new_tokens, 32, judge)
    util = batches_of(tok, load_split("alpaca", "eval")[:spec.n_utility], spec.max_len, spec.batch_size)
    out = {}
    for cond, m in tqdm([("unpruned", None), *masks.items()], desc="wanda: prune & measure",
                        disable=not progress, dynamic_ncols=True):
        rec = prune(model, m) if m is not None else None
        try:
            s = probe(model)
            out[cond] = {"refusal": s.refusal, "harmful": s.harmful, "logodds": s.logodds,
                         "utility_nll": answer_nll(model, util), "n_zeroed": rec.n_zeroed if rec else 0,
                         "answers": s.answers[:3]}
        finally:
            if rec is not None:
                rec.restore(model)
    return out
