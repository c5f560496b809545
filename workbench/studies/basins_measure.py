"""What the basin study measures on one aligned model: its safety landscape along three kinds of slice, and the
harmful loss.

    random     VISAGE 1D (`analysis.landscape`) along N filter-normalised Gaussian directions whose seeds are the
               study's seed + 0 … N − 1 for every model: the same draws (the same `torch.Generator` stream walking
               `named_parameters()`), rescaled row by row to each model's own weights (`random_direction`)
    gradient   the slice along d = −∇θ L_harm at the aligned weights, rescaled like the random directions
               (`normalized_direction`): α > 0 moves the way the first step of a harmful fine-tuning moves
    line       θ_aligned + α·(θ_attacked − θ_aligned) over `line_range` (0 = aligned, 1 = attacked), when the attack
               run kept its weights. An archived attack run did not: then there is no line, unless `reattack`, which
               re-trains the first kept attack run from its recorded spec and seed on the aligned model (no
               evaluation), ends the line at that reproduction and deletes it afterwards (`line_reproduced`). HS
               stays the archived run's own; the reproduction is the same training, not necessarily bit-identical
               weights on another machine or library version.

Harmful loss L_harm: the mean cross-entropy per answer token (every answer token of the set counts once, as the
training loss counts them) of harmful answers given their prompts, on the held-out side of `harmful_qa` (harmful
question → harmful answer pairs whose shipped verdict calls the answer harmful). The train side of `harmful_qa` is
what the attacker and the alignment defenses (RepNoise, Booster, TAR, T-Vaccine) train on; the held-out side no
run trains on, and `workbench.data.validation`'s split holds AdvBench prompts without answers, so it has no pairs.
L_harm is measured at the aligned point, and along the slices named in `loss_along` (one forward pass over the
pairs per point).

Safety at each point is a `SafetyProbe` on the held-out prompts of `prompts` (keyword refusal of a few greedy tokens
by default). Every point is measured in float32 (`precision.fp32_required`, as the landscape analysis).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm.auto import tqdm

from workbench.analysis.landscape import (
    Directions,
    Perturbation,
    basin_1d,
    grid,
    interpolation_direction,
    normalized_direction,
    random_direction,
    visage_1d,
)
from workbench.analysis.safety_metric import SafetyMeasure, SafetyProbe, batches_of, harmful_prompts
from workbench.config import EvalSpec, Spec
from workbench.data.chat import IGNORE
from workbench.data.registry import load_split
from workbench.data.types import Sample
from workbench.models import load_model
from workbench.precision import fp32_required
from workbench.runs import open_run
from workbench.steps import attack
from workbench.studies.basins_pairs import AlignedModel

HARMFUL_PAIRS = "harmful_qa"  # held-out side: harmful question → harmful answer pairs no run trains on


class MeasureSpec(Spec):
    """How each aligned model is measured (identical for every model of a study)."""

    n_directions: int = Field(8, ge=1)  # random directions, seeds seed + 0 … n − 1
    span: float = Field(1.0, gt=0)  # random and gradient slices: α ∈ [−span, span]
    n_points: int = Field(21, ge=3)  # points per random / gradient slice (odd: α = 0 on the grid)
    line_range: tuple[float, float] = (-0.5, 1.5)
    line_points: int = Field(21, ge=2)
    normalization: Literal["filter", "tensor"] = "filter"
    include_embeddings: bool = True
    prompts: str = "advbench"  # held-out prompts of this harmful-prompt dataset probe safety
    n_prompts: int = Field(32, ge=1)
    metric: Literal["keyword", "proxy"] = "keyword"
    max_new_tokens: int = Field(8, ge=1)
    batch_size: int = Field(32, ge=1)
    threshold: float = Field(0.5, ge=0, le=1)  # basin edge (VISAGE)
    n_pairs: int = Field(32, ge=1)  # harmful Q→A pairs for L_harm and its gradient
    max_len: int = Field(256, ge=16)
    loss_batch_size: int = Field(8, ge=1)
    loss_along: list[Literal["random", "gradient", "line"]] = ["gradient", "line"]

    @field_validator("n_points")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"must be odd so that α = 0 lies on the grid, got {v}")
        return v


def direction_seeds(seed: int, n: int) -> list[int]:
    """The random directions' seeds: the same list for every model (and the landscape analysis' own: seed + k)."""
    return [seed + k for k in range(n)]


class Slice(BaseModel):
    """Safety (and L_harm where measured) along one 1D slice θ₀ + α·d."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alphas: list[float]
    safety: list[float]
    logodds: list[float]
    harmful_loss: list[float] | None = None
    visage: float  # mean safety over the basin around α = 0
    basin: tuple[float, float]  # [α_lo, α_hi] of that basin

    @property
    def width(self) -> float:
        return self.basin[1] - self.basin[0]

    def safety_at(self, alpha: float) -> float | None:
        return next((s for a, s in zip(self.alphas, self.safety, strict=True) if abs(a - alpha) < 1e-9), None)


class ModelBasin(BaseModel):
    """One aligned model's measurements (the study's per-model result file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    label: str
    run: str
    defense: str
    hs: float  # post-attack HS (%), mean over `attacked_runs`
    attacked_runs: list[str]
    attacked_hs: list[float]
    direction_seeds: list[int]
    safety_at_origin: float
    harmful_loss: float  # L_harm at the aligned weights
    n_pairs: int
    random: list[Slice]
    gradient: Slice
    gradient_norm: float  # ‖∇θ L_harm‖ over every parameter, before the rescaling
    line: Slice | None = None
    line_run: str | None = None
    line_missing: str | None = None  # why there is no line
    line_reproduced: bool = False  # the line ends at a re-training of `line_run`, not at its own weights
    seconds: float

    @property
    def visage_random(self) -> float:
        return sum(s.visage for s in self.random) / len(self.random)

    @property
    def width_random(self) -> float:
        return sum(s.width for s in self.random) / len(self.random)


def harmful_pairs(n: int) -> list[Sample]:
    """The first `n` held-out harmful Q→A pairs whose answer is judged harmful (module doc)."""
    pairs = [s for s in load_split(HARMFUL_PAIRS, "eval") if s.meta.get("response_harmful") is True]
    if n > len(pairs):
        raise ValueError(f"asked for {n} harmful pairs but {HARMFUL_PAIRS!r} holds out {len(pairs)} with a harmful "
                         f"answer; lower --pairs")
    return pairs[:n]


def _answer_ce(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """(summed CE over the batch's answer tokens, their number)."""
    device = next(model.parameters()).device
    ids, mask, labels = (batch[k].to(device) for k in ("input_ids", "attention_mask", "labels"))
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1].float()
    target = labels[:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE,
                         reduction="sum")
    return ce, int((target != IGNORE).sum())


@torch.no_grad()
def harmful_loss(model, batches: list[dict[str, torch.Tensor]]) -> float:
    """L_harm: mean CE per answer token over all the batches."""
    total, count = 0.0, 0
    for b in batches:
        ce, n = _answer_ce(model, b)
        total, count = total + float(ce), count + n
    return total / count


def harmful_gradient(model, batches: list[dict[str, torch.Tensor]]) -> Directions:
    """∇θ L_harm at the model's weights, one tensor per parameter (the model's .grad left as it was: None)."""
    count = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)
    params = dict(model.named_parameters())
    was = {n: p.requires_grad for n, p in params.items()}
    for p in params.values():
        p.requires_grad_(True)
        p.grad = None
    try:
        with torch.enable_grad():
            for b in batches:
                ce, _ = _answer_ce(model, b)
                (ce / count).backward()
        return {n: p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for n, p in params.items()}
    finally:
        for n, p in params.items():
            p.grad = None
            p.requires_grad_(was[n])


def _slice(model, probe: SafetyProbe, d: Directions, alphas: torch.Tensor, origin: SafetyMeasure, loss0: float,
           loss_batches: list | None, threshold: float, desc: str, progress: bool) -> Slice:
    """Safety (and L_harm with `loss_batches`) at θ₀ + α·d for each α; α = 0 reuses the origin's measures."""
    safety, logodds, losses = [], [], []
    with Perturbation(model, [d]) as pert:
        for a in tqdm(alphas.tolist(), desc=desc, disable=not progress, unit="point", dynamic_ncols=True, leave=False):
            if a == 0.0:
                m, loss = origin, loss0
            else:
                pert.set(a)
                m = probe(model)
                loss = harmful_loss(model, loss_batches) if loss_batches is not None else None
            safety.append(m.safety)
            logodds.append(m.logodds)
            losses.append(loss)
    lo, hi = basin_1d(alphas, safety, threshold)
    return Slice(alphas=alphas.tolist(), safety=safety, logodds=logodds,
                 harmful_loss=losses if loss_batches is not None else None,
                 visage=visage_1d(alphas, safety, threshold), basin=(float(alphas[lo]), float(alphas[hi])))


NO_EVAL = EvalSpec(n_harmful=0, n_benign=0, n_task=0, judge=False)  # a reproduction is only trained


def reattack(entry: AlignedModel, out: Path, progress: bool = True) -> Path:
    """The first kept attack run of `entry`, trained again from its record on the aligned model into `out`."""
    run = open_run(entry.attacked[0].run)
    shutil.rmtree(out, ignore_errors=True)  # a reproduction left by an interruption
    return attack(run.attack, entry.run, out, run.seed, NO_EVAL, progress=progress)


def measure(entry: AlignedModel, spec: MeasureSpec, seed: int, progress: bool = True,
            reattack_dir: Path | None = None) -> ModelBasin:
    """Every slice and L_harm of one aligned model (module doc); the model is loaded here and freed after. With
    `reattack_dir`, an attack run without weights is re-trained there for the line, then deleted."""
    t0 = time.perf_counter()
    model, tok = load_model(entry.run)
    model = fp32_required(model)  # never bf16 (analysis.landscape)
    probe = SafetyProbe(tok, harmful_prompts(spec.prompts, spec.n_prompts), spec.metric, spec.max_new_tokens,
                        spec.batch_size)
    batches = batches_of(tok, harmful_pairs(spec.n_pairs), spec.max_len, spec.loss_batch_size)
    origin, loss0 = probe(model), harmful_loss(model, batches)
    alphas = grid(-spec.span, spec.span, spec.n_points)

    def run_slice(d: Directions, points: torch.Tensor, kind: str, desc: str) -> Slice:
        return _slice(model, probe, d, points, origin, loss0, batches if kind in spec.loss_along else None,
                      spec.threshold, f"{entry.label}: {desc}", progress)

    seeds = direction_seeds(seed, spec.n_directions)
    random = []
    for k, s in enumerate(seeds):
        d = random_direction(model, s, spec.normalization, spec.include_embeddings)
        random.append(run_slice(d, alphas, "random", f"random {k + 1}/{len(seeds)}"))
        del d
    grad = harmful_gradient(model, batches)
    norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grad.values())))
    d = normalized_direction(model, {n: -g for n, g in grad.items()}, spec.normalization, spec.include_embeddings)
    del grad
    gradient = run_slice(d, alphas, "gradient", "−∇ L_harm")
    del d
    line = missing = None
    end, reproduced = entry.line_from, None
    if end is None and reattack_dir is not None:
        reproduced = reattack(entry, reattack_dir / entry.key, progress)
        end = str(reproduced)
    if end is None:
        missing = "the attack run(s) kept no model weights (archived records only); --reattack re-trains one"
    else:
        other, _ = load_model(end)
        d = interpolation_direction(model, fp32_required(other))
        del other
        line = run_slice(d, grid(*spec.line_range, spec.line_points), "line", "aligned → attacked")
        del d
    if reproduced is not None:
        shutil.rmtree(reproduced.parent)
    return ModelBasin(key=entry.key, label=entry.label, run=entry.run, defense=entry.defense, hs=entry.hs,
                      attacked_runs=[a.run for a in entry.attacked], attacked_hs=[a.hs for a in entry.attacked],
                      direction_seeds=seeds, safety_at_origin=origin.safety, harmful_loss=loss0,
                      n_pairs=spec.n_pairs, random=random, gradient=gradient, gradient_norm=norm, line=line,
                      line_run=entry.line_from or (entry.attacked[0].run if reproduced else None),
                      line_missing=missing, line_reproduced=reproduced is not None,
                      seconds=round(time.perf_counter() - t0, 2))
