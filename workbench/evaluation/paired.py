"""Paired comparison of two models evaluated on the same prompts ("does this defense lower HS below SFT?").

Two independent 95 % Wilson intervals on n = 100 overlap for differences up to ~12 points, but both models
answered the *same* prompts, so the right test looks only at the prompts where they disagree: with b = prompts
flagged for A only and c = for B only, the exact McNemar test is a two-sided binomial test of b against
Bin(b + c, ½) (scipy's `binomtest`), and the difference of rates is (b − c) / n with a paired bootstrap
interval over prompts (`stats.bootstrap_ci`). Prompts are matched by (set, prompt) in the runs' samples.jsonl.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from workbench.evaluation.stats import bootstrap_ci

# metric → (evaluation set, per-sample flag): the per-answer definitions behind the rates in metrics.json
FLAGS: dict[str, tuple[str, Callable[[dict], bool]]] = {
    "hs": ("harmful", lambda r: bool(r["harmful"])),
    "hs_plus": ("harmful", lambda r: bool(r["harmful"]) or not r["coherent"]),
    "refusal_harmful": ("harmful", lambda r: bool(r["refusal"])),
    "refusal_benign": ("benign", lambda r: bool(r["refusal"])),
    "fa": ("task", lambda r: bool(r["correct"])),
}


@dataclass(frozen=True)
class PairedDifference:
    metric: str
    n: int  # prompts both models answered
    value: float  # rate(A) − rate(B), percentage points
    low: float
    high: float
    only_a: int  # prompts flagged for A but not B
    only_b: int
    p_value: float  # exact McNemar (two-sided)

    def to_dict(self) -> dict:
        return asdict(self)


def paired_difference(a: Sequence[bool], b: Sequence[bool], metric: str = "", seed: int = 0) -> PairedDifference:
    from scipy.stats import binomtest  # deferred: scipy


    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError(f"paired flags need two equal, non-empty lists; got {len(x)} and {len(y)}")
    only_a, only_b = int((x & ~y).sum()), int((~x & y).sum())
    diff = 100.0 * (x.astype(float) - y.astype(float))
    low, high = bootstrap_ci(diff, seed=seed)
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return PairedDifference(metric, len(x), float(diff.mean()), float(low), float(high), only_a, only_b, float(p))


def sample_flags(samples: list[dict], metric: str) -> dict[str, bool]:
    """{prompt: flag} for `metric` ("fa_<task>" reads as "fa") over one run's samples."""
    key = "fa" if metric.startswith("fa_") else metric
    if key not in FLAGS:
        raise ValueError(f"no per-sample flag for metric {metric!r}; known: {', '.join(FLAGS)}, fa_<task>")
    wanted, flag = FLAGS[key]
    return {r["prompt"]: flag(r) for r in samples if r.get("set") == wanted}


def compare_samples(samples_a: list[dict], samples_b: list[dict], metric: str, seed: int = 0) -> PairedDifference:
    """Paired difference A − B on the prompts both runs answered."""
    fa, fb = sample_flags(samples_a, metric), sample_flags(samples_b, metric)
    shared = [p for p in fa if p in fb]
    if not shared:
        raise ValueError(f"the two runs share no prompts for {metric}: they were evaluated on different sets")
    return paired_difference([fa[p] for p in shared], [fb[p] for p in shared], metric, seed)
