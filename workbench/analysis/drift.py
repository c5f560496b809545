"""Embedding drift: how far fine-tuning moves the hidden states of the alignment data, layer by layer.

Method, top to bottom:
  1. data     the alignment data the reference model was aligned on: held-in AdvBench prompts answered
              with template refusals (`safety_metric.calibration_samples("refusal")`), chat-formatted.
  2. collect  hidden states of both models on the same tokens: HF `output_hidden_states`, index 0 = the
              embedding output, index l = output of block l (the last one after the final RMSNorm);
              `[batch, pos, d_model]` each.
  3. compute  per token t and layer l, with h = reference, h' = compared model:
                  L2      ‖h'_t − h_t‖₂
                  cosine  1 − cos(h_t, h'_t), computed as ½‖h_t/‖h_t‖ − h'_t/‖h'_t‖‖² (equal, and exactly
                          0 for identical states)
                  rel_l2  Σ_t ‖h'_t − h_t‖ / Σ_t ‖h_t‖ (comparable across layers)
              averaged over all non-pad tokens (or only answer tokens). A model against itself gives 0.
  4. along training  `drift_along_checkpoints(reference, models | folder, steps)` repeats 3. for a series
              of checkpoints; `drift_sweep` trains short harmful fine-tuning attacks at several harmful
              ratios p with the one training loop and records, every `every` steps, drift AND refusal
              (keyword; HS with the judge) on held-out harmful prompts, so drift vs step sits next to
              refusal vs step, and reports their rank correlations.

CLI: `workbench analyze drift --model ALIGNED --compare ATTACKED` (mode "pair"), or
`workbench analyze drift --model ALIGNED --param mode=sweep --param 'ps=[0,0.1,0.3]'`.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from workbench.analysis.result import AnalysisResult
from workbench.analysis.safety_metric import SafetyProbe, batches_of, calibration_samples, harmful_prompts
from workbench.attacks import build_attack_data
from workbench.config import AttackSpec, DataSpec, TrainSpec
from workbench.config import Spec as BaseSpec
from workbench.evaluation.judge import load_judge
from workbench.models import load_model
from workbench.training.loop import train
from workbench.training.plugins import TrainPlugin


class Spec(BaseSpec):
    mode: Literal["pair", "sweep"] = "pair"
    n_samples: int = Field(32, ge=1)  # alignment-data samples the drift is measured on
    max_len: int = Field(128, ge=8)
    batch_size: int = Field(8, ge=1)
    tokens: Literal["all", "answer"] = "all"
    # sweep: short harmful fine-tuning attacks from --model at each harmful ratio p
    ps: list[float] = [0.0, 0.1, 0.3]
    n: int = Field(64, ge=1)  # attack samples
    benign: str = "sst2"
    method: Literal["lora", "full"] = "lora"
    lr: float = Field(3e-4, gt=0)
    max_steps: int = Field(8, ge=1)
    every: int = Field(2, ge=1)  # record drift + refusal every this many optimizer steps (and at 0, end)
    train_batch_size: int = Field(8, ge=1)
    train_max_len: int = Field(256, ge=8)
    n_eval_prompts: int = Field(16, ge=1)
    max_new_tokens: int = Field(16, ge=1)
    judge: bool = False


# --- 2./3. collect and compute --------------------------------------------------------------------------

@torch.no_grad()
def layer_drift(reference, other, batches, tokens: str = "all") -> dict[str, torch.Tensor]:
    """{"l2", "cosine", "rel_l2"}: `[n_layers + 1]` float64 each, means over the chosen tokens."""
    dev_r, dev_o = next(reference.parameters()).device, next(other.parameters()).device
    modes = (reference.training, other.training)
    reference.eval()
    other.eval()
    l2 = cos = ref_norm = None
    n_tok = 0
    try:
        for b in batches:
            w = ((b["labels"] != -100) if tokens == "answer" else b["attention_mask"].bool())
            hr = reference(input_ids=b["input_ids"].to(dev_r), attention_mask=b["attention_mask"].to(dev_r),
                           output_hidden_states=True, use_cache=False, logits_to_keep=1).hidden_states
            ho = other(input_ids=b["input_ids"].to(dev_o), attention_mask=b["attention_mask"].to(dev_o),
                       output_hidden_states=True, use_cache=False, logits_to_keep=1).hidden_states
            if l2 is None:
                l2, cos, ref_norm = (torch.zeros(len(hr), dtype=torch.float64) for _ in range(3))
            for layer, (a, c) in enumerate(zip(hr, ho, strict=False)):
                a = a.double().cpu()[w]  # [tokens, d_model]
                c = c.double().cpu()[w]
                l2[layer] += (c - a).norm(dim=-1).sum()
                ua = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-30)
                uc = c / c.norm(dim=-1, keepdim=True).clamp_min(1e-30)
                cos[layer] += 0.5 * (ua - uc).square().sum(-1).sum()
                ref_norm[layer] += a.norm(dim=-1).sum()
            n_tok += int(w.sum())
    finally:
        reference.train(modes[0])
        other.train(modes[1])
    return {"l2": l2 / n_tok, "cosine": cos / n_tok, "rel_l2": l2 / ref_norm.clamp_min(1e-30)}


def drift_batches(tokenizer, n_samples: int = 32, max_len: int = 128, batch_size: int = 8, seed: int = 0):
    """Batches of the alignment data (harmful prompts → refusals) the drift is measured on."""
    return batches_of(tokenizer, calibration_samples("refusal", n_samples, seed), max_len, batch_size)


def summary(d: dict[str, torch.Tensor]) -> float:
    """One number per model: mean rel_l2 over blocks 1..L (block 0 = embeddings, unchanged by LoRA)."""
    return float(d["rel_l2"][1:].mean())


# --- 4. along training ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class DriftCurve:
    """Drift of a series of models against one reference: `[n_checkpoints, n_layers + 1]` per measure."""

    steps: list[int]
    l2: torch.Tensor
    cosine: torch.Tensor
    rel_l2: torch.Tensor

    @property
    def mean(self) -> torch.Tensor:
        """`[n_checkpoints]` mean rel_l2 over blocks 1..L."""
        return self.rel_l2[:, 1:].mean(1)


def _checkpoint_folders(folder: Path) -> tuple[list[Path], list[int]]:
    subs = [p for p in folder.iterdir() if p.is_dir() and re.search(r"(\d+)$", p.name)]
    if not subs:
        raise ValueError(f"{folder}: no checkpoint sub-folders named like 'step-25' / 'checkpoint-25'")
    subs.sort(key=lambda p: int(re.search(r"(\d+)$", p.name).group(1)))
    return subs, [int(re.search(r"(\d+)$", p.name).group(1)) for p in subs]


def drift_along_checkpoints(reference, models: Sequence | str | Path, steps: Sequence[int] | None = None,
                            batches=None, tokenizer=None, tokens: str = "all", n_samples: int = 32,
                            seed: int = 0) -> DriftCurve:
    """Drift of each model in `models` against `reference`.

    reference: a loaded model or anything `load_model` accepts. models: a list of loaded models /
    references, or a folder whose sub-folders (`step-N`, `checkpoint-N`: sorted by N) are model folders.
    steps: x-values (default: N from the folder names, else 0, 1, 2, ...). batches: default
    `drift_batches(tokenizer, n_samples)`. Models given by reference are loaded one at a time.
    """
    if isinstance(reference, (str, Path)):
        reference, tok = load_model(reference)
        tokenizer = tokenizer or tok
    if isinstance(models, (str, Path)):
        models, found = _checkpoint_folders(Path(models))
        steps = steps if steps is not None else found
    models = list(models)
    steps = list(steps) if steps is not None else list(range(len(models)))
    if len(steps) != len(models):
        raise ValueError(f"{len(models)} models but {len(steps)} steps")
    if batches is None:
        if tokenizer is None:
            raise ValueError("give `batches` or a `tokenizer` (or a reference by name/folder)")
        batches = drift_batches(tokenizer, n_samples, seed=seed)
    rows = []
    for m in models:
        model = load_model(m)[0] if isinstance(m, (str, Path)) else m
        rows.append(layer_drift(reference, model, batches, tokens))
        del model
    return DriftCurve(steps=steps, **{k: torch.stack([r[k] for r in rows]) for k in ("l2", "cosine", "rel_l2")})


class CheckpointProbe(TrainPlugin):
    """Training-loop plugin: at step 0 (call `record` before training), every `every` steps and at the end,
    records layer drift against `reference` and safety on `probe`'s prompts. Reads the model only."""

    name = "drift-probe"

    def __init__(self, reference, batches, probe: SafetyProbe, every: int, tokens: str = "all"):
        self.reference, self.batches, self.probe, self.every, self.tokens = reference, batches, probe, every, tokens
        self.rows: list[tuple[int, dict, object]] = []

    def record(self, model, step: int) -> None:
        self.rows.append((step, layer_drift(self.reference, model, self.batches, self.tokens), self.probe(model)))

    def on_step_end(self, model, state) -> None:
        if state.step % self.every == 0 or state.step == state.total_steps:
            self.record(model, state.step)


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ (average ranks for ties); nan when either side is constant or n < 3."""
    from scipy.stats import rankdata  # deferred: scipy

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


# --- results -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DriftResult(AnalysisResult):
    """Per-layer drift of `compare` against `model` (index 0 = embeddings)."""

    model: str
    compare: str
    tokens: str
    n_tokens_samples: int
    l2: torch.Tensor  # [n_layers + 1]
    cosine: torch.Tensor
    rel_l2: torch.Tensor

    def headline(self) -> dict:
        return {"drift_rel_l2_mean": float(self.rel_l2[1:].mean()), "drift_cosine_mean": float(self.cosine[1:].mean()),
                "drift_l2_last": float(self.l2[-1]), "max_rel_l2_layer": int(self.rel_l2.argmax())}


@dataclass(frozen=True)
class DriftSweepResult(AnalysisResult):
    """Drift and safety along short attacks at several harmful ratios: `[n_p, n_checkpoints(, n_layers + 1)]`."""

    model: str
    ps: list[float]
    steps: list[int]
    l2: torch.Tensor  # [n_p, n_ckpt, n_layers + 1]
    cosine: torch.Tensor
    rel_l2: torch.Tensor
    refusal: torch.Tensor  # [n_p, n_ckpt] keyword refusal rate on held-out harmful prompts
    harmful: torch.Tensor  # [n_p, n_ckpt] judge HS (nan without the judge)
    logodds: torch.Tensor  # [n_p, n_ckpt] mean first-token refusal log-odds
    correlations: dict
    train_seconds: list[float]

    @property
    def drift(self) -> torch.Tensor:
        """`[n_p, n_ckpt]` mean rel_l2 over blocks 1..L."""
        return self.rel_l2[..., 1:].mean(-1)

    def headline(self) -> dict:
        d = self.drift
        return {"final_drift_by_p": {f"{p:g}": float(d[i, -1]) for i, p in enumerate(self.ps)},
                "final_refusal_by_p": {f"{p:g}": float(self.refusal[i, -1]) for i, p in enumerate(self.ps)},
                **self.correlations}


def _correlations(ps, steps, drift: torch.Tensor, refusal: torch.Tensor, harmful: torch.Tensor) -> dict:
    flat = lambda t: t.reshape(-1).tolist()  # noqa: E731
    out = {"spearman_drift_refusal": rank_correlation(flat(drift), flat(refusal)),
           "spearman_drift_harmful": rank_correlation(flat(drift), flat(harmful)),
           "spearman_drift_step_by_p": {f"{p:g}": rank_correlation(steps, drift[i].tolist()) for i, p in enumerate(ps)},
           "spearman_final_drift_p": rank_correlation(ps, drift[:, -1].tolist())}
    later = drift[:, 1:]  # steps > 0: drift at step 0 is 0 for every p
    out["drift_monotone_in_p_at_every_step"] = bool((later[1:] >= later[:-1]).all()) if len(ps) > 1 else None
    return out


def drift_sweep(reference: str, spec: Spec, seed: int = 0, progress: bool = True) -> DriftSweepResult:
    """For each p: a fresh copy of `reference` → harmful_ft(p, n) for `max_steps` steps with a
    `CheckpointProbe`; returns drift and refusal per (p, step)."""

    tspec = TrainSpec(method=spec.method, lr=spec.lr, max_steps=spec.max_steps, batch_size=spec.train_batch_size,
                      max_len=spec.train_max_len, seed=seed, checkpoint_every=10**9)
    # Every p's user data is built before any training so that an infeasible (p, n) fails in seconds, not
    # after the earlier ratios have trained.
    datasets = [build_attack_data(AttackSpec(data=DataSpec(benign=spec.benign, p=p, n=spec.n, seed=seed), train=tspec))
                for p in spec.ps]
    ref, tok = load_model(reference)
    batches = drift_batches(tok, spec.n_samples, spec.max_len, spec.batch_size, seed)
    judge = None
    if spec.judge:
        judge = load_judge(progress=progress)
    probe = SafetyProbe(tok, harmful_prompts("advbench", spec.n_eval_prompts), "judge" if judge else "keyword",
                        spec.max_new_tokens, 32, judge)
    per_p, seconds = [], []
    for p, data in zip(spec.ps, datasets, strict=False):
        model, _ = load_model(reference)
        rec = CheckpointProbe(ref, batches, probe, spec.every, spec.tokens)
        rec.record(model, 0)
        res = train(model, tok, data, tspec, [rec], progress=progress, desc=f"drift sweep p={p:g}")
        per_p.append(rec.rows)
        seconds.append(round(res.state.seconds, 2))
        del model, res
    steps = [s for s, _, _ in per_p[0]]
    stack = lambda key: torch.stack([torch.stack([d[key] for _, d, _ in rows]) for rows in per_p])  # noqa: E731
    meas = lambda attr: torch.tensor([[getattr(m, attr) for _, _, m in rows] for rows in per_p],  # noqa: E731
                                     dtype=torch.float64)
    rel = stack("rel_l2")
    refusal, harmful = meas("refusal"), meas("harmful")
    corr = _correlations(list(spec.ps), steps, rel[..., 1:].mean(-1), refusal, harmful)
    return DriftSweepResult(model=str(reference), ps=list(spec.ps), steps=steps, l2=stack("l2"),
                            cosine=stack("cosine"), rel_l2=rel, refusal=refusal, harmful=harmful,
                            logodds=meas("logodds"), correlations=corr, train_seconds=seconds)


def run(ctx, spec: Spec):
    """mode "pair": drift of --compare against --model; mode "sweep": `drift_sweep` from --model."""
    if spec.mode == "sweep":
        return drift_sweep(ctx.model, spec, ctx.seed, ctx.progress)
    ref, tok = ctx.load("model")
    other, _ = ctx.load("compare")
    d = layer_drift(ref, other, drift_batches(tok, spec.n_samples, spec.max_len, spec.batch_size, ctx.seed),
                    spec.tokens)
    return DriftResult(model=str(ctx.model), compare=str(ctx.compare), tokens=spec.tokens,
                       n_tokens_samples=spec.n_samples, **d)
