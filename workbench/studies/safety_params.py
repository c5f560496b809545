"""Which criterion finds the safety-critical weights, and when should it act? (Future Direction I;
docs/open-questions.md, question 1.) `workbench study safety-params --model ALIGNED_RUN ...`.

Method, top to bottom:
  1. score      every criterion of `safety_params_criteria.CRITERIA` (Wanda, SNIP, their safety-minus-utility set
                differences, the two-threshold (p, q) rule with p chosen on calibration data, gradient magnitude
                on refusal data, and the controls random and |ΔW| of the alignment update) scores every weight of
                the aligned model's linear sublayers, from training-side calibration data
                (`analysis.safety_metric.calibration_samples`: never a held-out prompt).
  2. rank       each criterion's scores become nested top-k % masks over the k grid (`safety_params_masks`).
  3. curve      for each criterion and k: prune the mask (`models.pruning.prune`), measure, restore exactly
                (`PruneRecord.restore`). Safety: keyword refusal rate on `n_eval_prompts` held-out AdvBench prompts
                (`SafetyProbe`; with `judge` also HS). Utility: answer NLL on `n_utility` held-out Alpaca pairs
                (`analysis.wanda.answer_nll`). Reported against the unpruned model:
                    refusal lost  = refusal(unpruned) − refusal(pruned), percentage points, with a paired bootstrap
                                    95 % interval and McNemar's p over the same prompts (`evaluation.paired`)
                    utility lost  = NLL(pruned) − NLL(unpruned), nats per answer token
                The safety-specificity curve is refusal lost against utility lost as k grows: a specific criterion
                climbs steeply (much refusal lost for little utility lost); random should stay flat.
  4. overlap    Jaccard |A ∩ B| / |A ∪ B| of the top-k sets of every pair of criteria, over all weights and per
                (layer, module type); and the share per layer of each criterion's top k % of all weights ranked
                together (where it would prune if free to choose the layers; the act step freezes by it).
  5. subspace   SafeLoRA gives an alignment subspace per matrix, not per-weight scores. Per layer: the share of the
                pruning change M ⊙ W inside span(W_aligned − W_base) vs inside a random subspace of the same rank
                (in expectation, rank / d_out: `safety_params_masks.subspace_share`). Needs the base model (as does
                `delta`).
  6. act        (optional, `act=True`: `safety_params_act`) the criterion drives a defense: (a) Freeze during
                fine-tuning on the layers holding most of its top-k set, (b) pruning its top-k of the attacked
                model (as Antidote does), each judged by post-attack HS and FA of ordinary attack / eval runs.

Output: one run folder of kind "study" (name "safety-params"): config.json (the spec, seed), result.json +
tensors.safetensors (`SafetyParamsResult`), metrics.json (the headline numbers), figures/, and under act/ the
attack, defend and eval runs of step 6. Resumable: an interrupted study keeps its staging folder, and `resume`
measures only the cells not measured yet (`MeasureLog`) and reuses the act step's finished runs. Deterministic
under the seed (calibration draws, random scores, greedy
generation, the attack runs' seeds).

Shapes (C criteria, K values of k, L layers, T module types, N held-out prompts): curves `[C, K]`, Jaccard
`[K, C, C]` and `[K, C, C, L, T]`, layer shares and subspace shares `[C, K, L]`, refusal flags `[C, K, N]`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from tqdm.auto import tqdm

from workbench.analysis.result import AnalysisResult
from workbench.analysis.safety_metric import SafetyProbe, batches_of, calibration_samples, harmful_prompts
from workbench.analysis.wanda import DEFAULT_MODULES, answer_nll, prune
from workbench.config import Spec as BaseSpec
from workbench.data.registry import load_split
from workbench.evaluation.paired import paired_difference
from workbench.evaluation.refusal import is_refusal
from workbench.models import load_model
from workbench.models.registry import MODELS
from workbench.plots.export import export_all
from workbench.record import StudyRunSpec
from workbench.runs import Run, RunWriter, atomic_write_text, model_ref, run_kind
from workbench.steps import begin_step
from workbench.studies.safety_params_act import ActRow, act
from workbench.studies.safety_params_criteria import CRITERIA, CriterionInputs, check_criteria, linear_weights
from workbench.studies.safety_params_masks import (
    cells,
    jaccard,
    layer_shares,
    levels,
    mask_at,
    subspace_bases,
    subspace_share,
)

STUDY = "safety-params"  # the run's name: folders `study-safety-params-<timestamp>`
DEFAULT_K = [0.5, 1.0, 2.0, 4.0, 8.0]


class Spec(BaseSpec):
    criteria: list[str] = list(CRITERIA)
    k: list[float] = list(DEFAULT_K)  # percent of weights pruned, in (0, 100]
    group: Literal["matrix", "global"] = "matrix"  # top k % of every matrix, or of all scored weights at once
    safety_data: Literal["refusal", "harmful"] = "refusal"  # Wanda / SNIP safety set (grad always uses refusals)
    n_calibration: int = Field(64, ge=1)
    max_len: int = Field(128, ge=8)
    batch_size: int = Field(8, ge=1)
    modules: list[str] = list(DEFAULT_MODULES)
    p: float = Field(0.03, ge=0, le=1)  # utility threshold of wanda_setdiff / snip_setdiff
    pq_grid: list[float] = [0.01, 0.03, 0.1, 0.3]  # utility thresholds `pq` chooses from
    pq_k: float | None = Field(None, gt=0, le=100)  # the k (percent) `pq` chooses p at; None: the middle of k
    pq_score: Literal["wanda", "snip"] = "wanda"
    n_eval_prompts: int = Field(64, ge=1)  # held-out AdvBench prompts
    max_new_tokens: int = Field(32, ge=1)
    n_utility: int = Field(64, ge=1)  # held-out Alpaca pairs
    judge: bool = False  # also HS by the built-in moderation judge
    act: bool = False  # step 6: the criteria drive Freeze and post-attack pruning (attack runs: slow)
    act_criteria: list[str] | None = None  # which criteria act (None: all of `criteria`)
    act_k: float = Field(1.0, gt=0, le=100)  # percent pruned after the attack
    act_layers: int | None = Field(None, ge=1)  # layers frozen (None: Freeze's default, a quarter of them)
    preset: Literal["full", "tiny"] | None = None  # attack / eval sizes of step 6 (None: by model name)

    @field_validator("criteria", "act_criteria")
    @classmethod
    def _known(cls, v):
        return None if v is None else check_criteria(v)

    @field_validator("k")
    @classmethod
    def _grid(cls, v):
        bad = [x for x in v if not 0 < x <= 100]
        if bad or not v:
            raise ValueError(f"k must be percentages in (0, 100], got {bad or 'none'}")
        return sorted(set(v))

    @field_validator("pq_grid")
    @classmethod
    def _pq_grid(cls, v):
        if not v or any(not 0 <= x <= 1 for x in v):
            raise ValueError(f"pq_grid must be fractions in [0, 1], got {v}")
        return v

    @model_validator(mode="after")
    def _act(self):
        if self.act_criteria is not None and not set(self.act_criteria) <= set(self.criteria):
            raise ValueError(f"act_criteria {self.act_criteria} must be among criteria {self.criteria}")
        return self

    @property
    def pq_k_resolved(self) -> float:
        return self.pq_k if self.pq_k is not None else self.k[len(self.k) // 2]


class Measure(BaseModel):
    """Safety and utility of one model state: refusal and HS in percent (HS None without the judge)."""

    model_config = ConfigDict(frozen=True)
    refusal: float
    harmful: float | None = None
    utility_nll: float


class PQChoice(BaseModel):
    """One p of `pq`'s grid: the calibration NLL rises when its set difference at k % is pruned."""

    model_config = ConfigDict(frozen=True)
    p: float
    k: float
    refusal_nll_rise: float
    utility_nll_rise: float
    gain: float  # refusal_nll_rise − utility_nll_rise; the largest is chosen
    chosen: bool


@dataclass(frozen=True)
class SafetyParamsResult(AnalysisResult):
    model: str
    base: str | None
    criteria: list[str]
    k: list[float]  # percent, ascending
    group: str
    seed: int
    n_weights: int  # scored weights
    n_eval_prompts: int
    layers: list[int]
    module_types: list[str]
    unpruned: Measure
    n_pruned: torch.Tensor  # [C, K] weights zeroed
    refusal: torch.Tensor  # [C, K] refusal rate after pruning, percent
    refusal_lost: torch.Tensor  # [C, K] percentage points (unpruned − pruned)
    refusal_lost_low: torch.Tensor  # [C, K] paired bootstrap 95 % interval
    refusal_lost_high: torch.Tensor
    refusal_lost_p: torch.Tensor  # [C, K] exact McNemar p
    harmful: torch.Tensor  # [C, K] HS after pruning, percent (NaN without the judge)
    utility_nll: torch.Tensor  # [C, K]
    utility_lost: torch.Tensor  # [C, K] nats per answer token (pruned − unpruned)
    refusal_flags: torch.Tensor  # [C, K, N] uint8, per held-out prompt
    unpruned_flags: torch.Tensor  # [N] uint8
    jaccard: torch.Tensor  # [K, C, C]
    jaccard_cells: torch.Tensor  # [K, C, C, L, T]
    layer_share: torch.Tensor  # [C, K, L] share of each criterion's global top-k set per layer
    subspace_share: torch.Tensor | None = None  # [C, K, L] share of ‖M ⊙ W‖² in span(V) (NaN: no subspace)
    subspace_random: torch.Tensor | None = None  # [C, K, L] its expectation in a random subspace of equal rank
    pq: list[PQChoice] | None = None
    act: list[ActRow] | None = None

    def __post_init__(self):  # read back typed: the JSON holds the models as dicts
        if isinstance(self.unpruned, dict):
            object.__setattr__(self, "unpruned", Measure(**self.unpruned))
        if self.pq is not None:
            object.__setattr__(self, "pq", [r if isinstance(r, PQChoice) else PQChoice(**r) for r in self.pq])
        if self.act is not None:
            object.__setattr__(self, "act", [r if isinstance(r, ActRow) else ActRow(**r) for r in self.act])

    def index(self, criterion: str) -> int:
        return self.criteria.index(criterion)

    def headline(self) -> dict:
        h: dict = {"unpruned.refusal": self.unpruned.refusal, "unpruned.utility_nll": self.unpruned.utility_nll,
                   "n_weights": self.n_weights}
        for c, name in enumerate(self.criteria):
            for i, k in enumerate(self.k):
                h[f"{name}@{k:g}%.refusal_lost"] = float(self.refusal_lost[c, i])
                h[f"{name}@{k:g}%.utility_lost"] = float(self.utility_lost[c, i])
        if self.pq:
            h["pq.chosen_p"] = next(r.p for r in self.pq if r.chosen)
        return h


def make_spec(**params) -> Spec:
    """The study's Spec from keyword parameters; ValueError naming the first problem (unknown criterion, k out of
    (0, 100], an unknown parameter, ...) instead of pydantic's report."""
    try:
        return Spec(**params)
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(str(x) for x in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = f"unknown parameter; the study accepts: {', '.join(Spec.model_fields)}"
        raise ValueError(f"{where}: {msg}" if where else msg) from None


def load_result(folder: str | Path) -> SafetyParamsResult:
    return SafetyParamsResult.load(folder)


# ------------------------------------------------------------------------------------------------- models


def alignment_base(model: str, base: str | None) -> str | None:
    """The model `model` was aligned from: `base` when given, else what an align run's record names (None for a
    model that is not a run folder). ValueError when the recorded base is no longer reachable."""
    if base is not None:
        if base not in MODELS and not Path(base).is_dir():
            raise ValueError(f"--base {base}: neither a registered model ({', '.join(sorted(MODELS))}) nor a folder")
        return base
    if run_kind(model) is None:
        return None
    run = Run(Path(model))
    if run.kind != "align":
        raise ValueError(f"{model} is a '{run.kind}' run; the study scores an aligned model: pass an align run "
                         f"folder (or any model with --base)")
    ref = run.base
    if ref is None:
        return None
    if ref not in MODELS and not Path(ref).is_dir():
        raise ValueError(f"{model} was aligned from {ref}, which is not reachable here; pass --base")
    return ref


def base_weights(ref: str, like: dict[str, torch.Tensor], modules) -> dict[str, torch.Tensor]:
    """The base model's scored linear weights (float32), checked against the aligned model's shapes."""
    m, _ = load_model(ref)
    weights = linear_weights(m, modules)
    if set(weights) != set(like) or any(weights[n].shape != like[n].shape for n in like):
        raise ValueError(f"base {ref} does not share the aligned model's linear weights (names and shapes)")
    return weights


def calibration(tok, spec: Spec, seed: int) -> tuple[list, list, list]:
    """(safety, utility, refusal) calibration batches: training-side samples only."""
    def batches(kind):
        return batches_of(tok, calibration_samples(kind, spec.n_calibration, seed), spec.max_len, spec.batch_size)

    safety = batches(spec.safety_data)
    refusal = safety if spec.safety_data == "refusal" else batches("refusal")
    return safety, batches("utility"), refusal


def score_levels(inputs: CriterionInputs, criteria: list[str], ks: list[float], group: str, progress: bool
                 ) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, dict[str, torch.Tensor]]]:
    """({criterion: levels in `group`}, {criterion: levels of the global ranking}) (`safety_params_masks.levels`),
    each criterion's full scores dropped once ranked. The global ranking says where a criterion would put its top
    k % if free to choose the layers (with `group="matrix"` every layer gets the same count)."""
    out, free = {}, {}
    for name in tqdm(criteria, desc="criteria: score", disable=not progress, dynamic_ncols=True):
        scores = CRITERIA[name](inputs)
        out[name] = levels(scores, ks, group)
        free[name] = out[name] if group == "global" else levels(scores, ks, "global")
    return out, free


# ------------------------------------------------------------------------------------------------- measure


class Meter:
    """Refusal flags on the held-out harmful prompts and the utility NLL of a model state."""

    def __init__(self, tok, spec: Spec, progress: bool):
        judge = None
        if spec.judge:
            from workbench.evaluation.judge import load_judge  # deferred: sentence-transformers

            judge = load_judge(progress=progress)
        self.probe = SafetyProbe(tok, harmful_prompts("advbench", spec.n_eval_prompts),
                                 "judge" if judge else "keyword", spec.max_new_tokens, 32, judge)
        self.utility = batches_of(tok, load_split("alpaca", "eval")[:spec.n_utility], spec.max_len, spec.batch_size)

    def __call__(self, model) -> tuple[list[bool], Measure]:
        s = self.probe(model)
        flags = [is_refusal(a) for a in s.answers]
        harmful = None if s.harmful != s.harmful else 100 * s.harmful  # NaN: no judge
        return flags, Measure(refusal=100 * sum(flags) / len(flags), harmful=harmful,
                              utility_nll=answer_nll(model, self.utility))


class MeasureLog:
    """The measurements made so far, as JSON in the run's checkpoint folder (None: kept in memory only), so that
    `--resume` after an interruption measures only the (criterion, k) cells not measured yet."""

    def __init__(self, path: Path | None):
        self.path = path
        self.done: dict = json.loads(path.read_text()) if path is not None and path.is_file() else {}

    def measure(self, key: str, meter: Meter, model, n_pruned: int = 0) -> tuple[list[bool], Measure, int]:
        if key not in self.done:
            flags, m = meter(model)
            self.done[key] = {"flags": flags, "measure": m.model_dump(), "n_pruned": n_pruned}
            if self.path is not None:
                atomic_write_text(self.path, json.dumps(self.done))
        d = self.done[key]
        return [bool(f) for f in d["flags"]], Measure(**d["measure"]), int(d["n_pruned"])


def curves(model, meter: Meter, lv: dict[str, dict[str, torch.Tensor]], criteria: list[str], ks: list[float],
           seed: int, progress: bool, log: MeasureLog | None = None) -> dict:
    """Prune each criterion's top-k, measure, restore: the tensors of the safety-specificity curves."""
    log = log if log is not None else MeasureLog(None)
    base_flags, base, _ = log.measure("unpruned", meter, model)
    C, K, N = len(criteria), len(ks), len(base_flags)
    out = {key: torch.zeros(C, K) for key in ("refusal", "refusal_lost", "refusal_lost_low", "refusal_lost_high",
                                               "refusal_lost_p", "harmful", "utility_nll", "utility_lost")}
    out["n_pruned"] = torch.zeros(C, K, dtype=torch.int64)
    out["refusal_flags"] = torch.zeros(C, K, N, dtype=torch.uint8)
    bar = tqdm(total=C * K, desc="prune & measure", disable=not progress, dynamic_ncols=True)
    for c, name in enumerate(criteria):
        for i, k in enumerate(ks):
            key = f"{name}@{k:g}"
            if key in log.done:
                flags, m, n_pruned = log.measure(key, meter, model)
            else:
                rec = prune(model, mask_at(lv[name], i))
                try:
                    flags, m, n_pruned = log.measure(key, meter, model, rec.n_zeroed)
                finally:
                    rec.restore(model)
            diff = paired_difference(base_flags, flags, f"refusal lost, {name} at {k:g}%", seed)
            out["n_pruned"][c, i] = n_pruned
            out["refusal_flags"][c, i] = torch.tensor(flags, dtype=torch.uint8)
            out["refusal"][c, i] = m.refusal
            out["refusal_lost"][c, i], out["refusal_lost_p"][c, i] = diff.value, diff.p_value
            out["refusal_lost_low"][c, i], out["refusal_lost_high"][c, i] = diff.low, diff.high
            out["harmful"][c, i] = float("nan") if m.harmful is None else m.harmful
            out["utility_nll"][c, i] = m.utility_nll
            out["utility_lost"][c, i] = m.utility_nll - base.utility_nll
            bar.update()
    bar.close()
    out["unpruned_flags"] = torch.tensor(base_flags, dtype=torch.uint8)
    return {"unpruned": base, **out}


def overlaps(lv: dict[str, dict[str, torch.Tensor]], free: dict[str, dict[str, torch.Tensor]], criteria: list[str],
             ks: list[float], layers: list[int], types: list[str]) -> dict:
    """Jaccard of the pruned sets (`lv`) of every pair of criteria at every k (overall and per cell), and the layer
    shares of each criterion's global top-k set (`free`)."""
    C, K, L, T = len(criteria), len(ks), len(layers), len(types)
    jac = torch.full((K, C, C), float("nan"))
    jac_cells = torch.full((K, C, C, L, T), float("nan"))
    share = torch.zeros(C, K, L)
    for i in range(K):
        masks = {c: mask_at(lv[c], i) for c in criteria}
        for a, ca in enumerate(criteria):
            share[a, i] = layer_shares(mask_at(free[ca], i), layers)
            for b in range(a, C):
                overall, per = jaccard(masks[ca], masks[criteria[b]], layers, types)
                jac[i, a, b] = jac[i, b, a] = overall
                jac_cells[i, a, b] = jac_cells[i, b, a] = per
    return {"jaccard": jac, "jaccard_cells": jac_cells, "layer_share": share}


def subspaces(lv, criteria, ks, layers, aligned, base) -> dict:
    """Per criterion, k and layer: share of the pruning change inside SafeLoRA's subspace, and inside a random
    subspace of the same rank (its expectation)."""
    bases = subspace_bases(aligned, base)
    C, K, L = len(criteria), len(ks), len(layers)
    share, rand = torch.full((C, K, L), float("nan")), torch.full((C, K, L), float("nan"))
    for c, name in enumerate(criteria):
        for i in range(K):
            share[c, i], rand[c, i] = subspace_share(mask_at(lv[name], i), aligned, bases, layers)
    return {"subspace_share": share, "subspace_random": rand}


# ------------------------------------------------------------------------------------------------- the study


def study(spec: Spec, model: str, base: str | None = None, seed: int = 0, progress: bool = True,
          act_folder: Path | None = None, checkpoint: Path | None = None, resume: bool = False) -> SafetyParamsResult:
    """Steps 1–6 of the module docstring on `model` (the aligned model) → the typed result (nothing written, except
    step 6's runs under `act_folder` and, with `checkpoint`, the measurements made so far, which `resume` reuses)."""
    base = alignment_base(model, base)
    if "delta" in spec.criteria and base is None:
        raise ValueError("criterion 'delta' (|W_aligned − W_base|) needs the base model: pass --base, or an align "
                         "run folder as --model (its record names the base); or leave delta out of --criteria")
    begin_step(seed)
    m, tok = load_model(model)
    safety, utility, refusal = calibration(tok, spec, seed)
    modules = tuple(spec.modules)
    aligned = linear_weights(m, modules)
    ref = base_weights(base, aligned, modules) if base is not None else None
    inputs = CriterionInputs(model=m, safety=safety, utility=utility, refusal=refusal, modules=modules, seed=seed,
                             p=spec.p, pq_grid=tuple(spec.pq_grid), pq_k=spec.pq_k_resolved, pq_score=spec.pq_score,
                             aligned=aligned, base=ref, progress=progress)
    m = inputs.model  # float32
    lv, free = score_levels(inputs, spec.criteria, spec.k, spec.group, progress)
    if not spec.act:  # the act step scores again (Freeze's layers); nothing else needs the cached scores
        inputs.forget()
    layers, types = cells(list(aligned), tuple(DEFAULT_MODULES))
    log = MeasureLog(Path(checkpoint) / "measurements.json" if checkpoint is not None else None)
    measured = curves(m, Meter(tok, spec, progress), lv, spec.criteria, spec.k, seed, progress, log)
    over = overlaps(lv, free, spec.criteria, spec.k, layers, types)
    del free
    sub = subspaces(lv, spec.criteria, spec.k, layers, aligned, ref) if ref is not None else {}
    acted = act(spec, model, base, layers, inputs, act_folder, seed, progress, resume) if spec.act else None
    pq = [PQChoice(**r) for r in inputs.pq_table] if inputs.pq_table else None
    return SafetyParamsResult(
        model=model_ref(model), base=model_ref(base) if base else None, criteria=list(spec.criteria),
        k=list(spec.k), group=spec.group, seed=seed, n_weights=sum(w.numel() for w in aligned.values()),
        n_eval_prompts=spec.n_eval_prompts, layers=layers, module_types=types, pq=pq, act=acted,
        **measured, **over, **sub)


def run_study(spec: Spec, model: str, out: str | Path, base: str | None = None, seed: int = 0,
              formats=("html", "png"), progress: bool = True, resume: bool = False) -> Path:
    """The study → one run folder `out` (kind "study", name "safety-params"): config.json, result.json +
    tensors.safetensors, metrics.json, figures/, act/ (step 6). Returns the folder. Interrupted, it keeps its staging
    folder; `resume` (the same spec and seed) reuses the measurements and the act step's finished runs there."""
    from workbench.plots.safety_params import figures  # deferred: plotly

    out = Path(out)
    base = alignment_base(model, base)  # checked before anything is written
    record = StudyRunSpec(study=STUDY, params=spec.model_dump(), model=model_ref(model),
                          base=model_ref(base) if base else None)
    with RunWriter(out.parent, "study", STUDY, record, seed=seed, final=out, resume=resume) as run:
        result = study(spec, model, base, seed, progress, act_folder=run.path / "act", checkpoint=run.checkpoint_dir,
                       resume=resume)
        result.save(run.path)
        run.write_metrics(result.headline())
        export_all(figures(result), run.path / "figures", formats)
    return run.final_path
