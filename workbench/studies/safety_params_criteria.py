"""The criteria of the safety-params study: each one a function of the scored model and its calibration batches
that gives a per-weight score `{parameter name: tensor like the weight}` over the linear sublayers that
`workbench.analysis.wanda` scores (q/k/v/o, gate/up/down of every decoder layer). Higher = more
safety-critical; the study prunes the top k % of each criterion.

    wanda          |W| · ‖X_j‖₂ on the safety calibration set (`analysis.wanda.wanda_scores`)
    snip           Σ_batches |W ⊙ ∂L/∂W| on the safety set (`analysis.wanda.snip_scores`)
    wanda_setdiff  Wei et al.'s set difference with a fixed utility threshold p (`spec.p`): the Wanda safety score
    snip_setdiff   on the weights outside the top-p of the utility score (`models.pruning.set_difference` with
                   q = 1), −1 on the top-p utility weights. Its top k % is exactly top-q(safety) \\ top-p(utility)
                   for the q at which that difference holds k % of the weights: the pruned size fixes q.
    pq             the two-threshold (p, q) rule with p *chosen*: `set_difference` already is Wei et al.'s S(p, q)
                   (two thresholds, each a top fraction per matrix). At a pruned size k the pair has one free
                   threshold (q follows from p), and Wei et al. choose it by the pruned model's behaviour. Here p
                   is chosen from `pq_grid` on the calibration data only (never the held-out prompts): the p whose
                   set difference at `pq_k` % raises the answer NLL of the refusal calibration set most relative to
                   that of the utility calibration set, Δ NLL_refusal − Δ NLL_utility. So `wanda_setdiff` is the
                   rule at a p fixed in advance, `pq` the rule at the p the data pick (`pq_score`: Wanda or SNIP).
    grad           Σ_batches |∂L/∂W| on the refusal set (harmful prompt → refusal): gradient magnitude alone,
                   without SNIP's |W| factor (`analysis.wanda.gradient_scores`)
    random         control: i.i.d. uniform scores from a generator seeded by the study's seed
    delta          control: |W_aligned − W_base|, the alignment update itself. Alignment here is LoRA on
                   q/k/v/o, so delta is 0 on the MLPs (ties there are broken by position, i.e. arbitrarily).

`CriterionInputs` carries what the criteria read and caches the Wanda / SNIP scores they share (a set difference
and `pq` reuse the plain scores). The registry is `CRITERIA`: one line per criterion.

Shapes: every score is `[d_out, d_in]` like its weight, float32, keyed `<module>.weight`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from workbench.analysis.wanda import (
    DEFAULT_MODULES,
    answer_nll,
    gradient_scores,
    prune,
    set_difference,
    snip_scores,
    wanda_scores,
)
from workbench.models.sites import linear_modules
from workbench.precision import fp32_required
from workbench.studies.safety_params_masks import top_masks

Scores = dict[str, torch.Tensor]


@dataclass
class CriterionInputs:
    """What a criterion reads. `model` is the model scored (float32; the aligned model, or the attacked one when
    a criterion drives pruning after the attack). `safety` / `utility` / `refusal`: calibration batches
    (`analysis.safety_metric.batches_of`). `aligned` / `base`: linear weights of the aligned model and of the
    model it was aligned from, for `delta` (None when the base is unknown)."""

    model: object
    safety: list[dict]
    utility: list[dict]
    refusal: list[dict]
    modules: tuple[str, ...] = tuple(DEFAULT_MODULES)
    seed: int = 0
    p: float = 0.03
    pq_grid: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3)
    pq_k: float = 2.0  # percent
    pq_score: str = "wanda"
    aligned: Scores | None = None
    base: Scores | None = None
    progress: bool = False
    pq_table: list[dict] = field(default_factory=list)  # filled by `pq`: one row per p of the grid
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.model = fp32_required(self.model)

    def score(self, kind: str, data: str) -> Scores:
        """Wanda or SNIP scores on the "safety" or "utility" batches, computed once."""
        key = (kind, data)
        if key not in self._cache:
            batches = self.safety if data == "safety" else self.utility
            fn = wanda_scores if kind == "wanda" else snip_scores
            self._cache[key] = fn(self.model, batches, self.modules, progress=self.progress)
        return self._cache[key]


    def forget(self) -> None:
        """Drop the cached Wanda / SNIP scores (four float32 copies of the scored weights)."""
        self._cache.clear()


# ------------------------------------------------------------------------------------------------- criteria


def wanda(x: CriterionInputs) -> Scores:
    return x.score("wanda", "safety")


def snip(x: CriterionInputs) -> Scores:
    return x.score("snip", "safety")


def setdiff_scores(safety: Scores, utility: Scores, p: float) -> Scores:
    """The safety score outside top-p(utility) (per matrix), −1 inside it: ranking by it and taking the top k %
    gives top-q(safety) \\ top-p(utility) for the q at which the difference has k % of the weights."""
    keep = set_difference(safety, utility, 1.0, p)
    return {n: torch.where(keep[n], safety[n], torch.full_like(safety[n], -1.0)) for n in safety}


def wanda_setdiff(x: CriterionInputs) -> Scores:
    return setdiff_scores(x.score("wanda", "safety"), x.score("wanda", "utility"), x.p)


def snip_setdiff(x: CriterionInputs) -> Scores:
    return setdiff_scores(x.score("snip", "safety"), x.score("snip", "utility"), x.p)


def pq(x: CriterionInputs) -> Scores:
    """The set difference at the p of `pq_grid` chosen on the calibration data (module docstring); the grid's
    table goes to `x.pq_table`."""
    safety, utility = x.score(x.pq_score, "safety"), x.score(x.pq_score, "utility")
    base_r, base_u = answer_nll(x.model, x.refusal), answer_nll(x.model, x.utility)
    table, best = [], None
    for p in tqdm(x.pq_grid, desc="pq: choose p", disable=not x.progress, dynamic_ncols=True):
        scores = setdiff_scores(safety, utility, p)
        (mask,) = top_masks(scores, [x.pq_k])
        rec = prune(x.model, mask)
        try:
            d_r, d_u = answer_nll(x.model, x.refusal) - base_r, answer_nll(x.model, x.utility) - base_u
        finally:
            rec.restore(x.model)
        row = {"p": p, "k": x.pq_k, "refusal_nll_rise": d_r, "utility_nll_rise": d_u, "gain": d_r - d_u}
        table.append(row)
        if best is None or row["gain"] > best[0]["gain"]:
            best = (row, scores)
    x.pq_table[:] = [{**r, "chosen": r is best[0]} for r in table]
    return best[1]


def grad(x: CriterionInputs) -> Scores:
    return gradient_scores(x.model, x.refusal, x.modules, progress=x.progress)


def random(x: CriterionInputs) -> Scores:
    gen = torch.Generator(device="cpu").manual_seed(x.seed)
    return {f"{n}.weight": torch.rand(m.weight.shape, generator=gen)
            for n, m in linear_modules(x.model, x.modules).items()}


def delta(x: CriterionInputs) -> Scores:
    if x.aligned is None or x.base is None:
        raise ValueError("criterion 'delta' needs the model the aligned model was aligned from: pass --base (or an "
                         "align run folder as --model, whose record names its base)")
    return {n: (x.aligned[n].float() - x.base[n].float()).abs() for n in x.aligned}


CRITERIA: dict[str, Callable[[CriterionInputs], Scores]] = {
    "wanda": wanda,
    "snip": snip,
    "wanda_setdiff": wanda_setdiff,
    "snip_setdiff": snip_setdiff,
    "pq": pq,
    "grad": grad,
    "random": random,
    "delta": delta,
}
CONTROLS = ("random", "delta")  # what every other criterion must beat


def check_criteria(names: list[str]) -> list[str]:
    """`names` as given, validated (ValueError naming the unknown ones and the known ones)."""
    unknown = [n for n in names if n not in CRITERIA]
    if unknown:
        raise ValueError(f"unknown criterion {', '.join(map(repr, unknown))}; criteria: {', '.join(CRITERIA)}")
    if not names:
        raise ValueError(f"no criteria given; criteria: {', '.join(CRITERIA)}")
    if len(set(names)) != len(names):
        raise ValueError(f"criteria listed twice: {names}")
    return list(names)


def linear_weights(model, modules=DEFAULT_MODULES) -> Scores:
    """Detached float32 copies of the scored linear weights, keyed `<module>.weight` (for `delta` and the
    subspace comparison)."""
    return {f"{n}.weight": m.weight.detach().float().clone() for n, m in linear_modules(model, modules).items()}
