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
    strata: int = 1  # seeds combined as strata (`stratified_difference`)

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


@dataclass(frozen=True)
class Equivalence:
    """Two one-sided tests (TOST) that |rate(A) − rate(B)| < margin, in percentage points."""

    metric: str
    n: int
    value: float  # rate(A) − rate(B), points
    low: float  # the (1 − 2α) interval: inside ±margin ⇔ equivalent at level α
    high: float
    margin: float
    p_value: float  # the larger of the two one-sided p-values
    equivalent: bool

    def to_dict(self) -> dict:
        return asdict(self)


def equivalence(a: Sequence[bool], b: Sequence[bool], margin: float = 5.0, alpha: float = 0.05,
                metric: str = "") -> Equivalence:
    """Paired TOST on per-prompt differences: H0 "the rates differ by ≥ margin points" is rejected when both
    one-sided t-tests of the mean difference (against −margin and +margin) reject at `alpha`. A lack of
    significance in McNemar's test is not evidence of sameness; this is."""
    from scipy.stats import t as student_t  # deferred: scipy

    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"paired flags need two equal lists of ≥ 2 prompts; got {len(x)} and {len(y)}")
    if not 0 < alpha < 0.5 or margin <= 0:
        raise ValueError(f"need 0 < alpha < 0.5 and margin > 0; got alpha={alpha}, margin={margin}")
    diff = 100.0 * (x.astype(float) - y.astype(float))
    n, mean = len(diff), float(diff.mean())
    se = float(diff.std(ddof=1)) / np.sqrt(n)
    if se == 0.0:  # every prompt agrees (or differs identically): the difference is known exactly
        p = 0.0 if abs(mean) < margin else 1.0
        low = high = mean
    else:
        p = float(max(student_t.sf((mean + margin) / se, n - 1), student_t.sf((margin - mean) / se, n - 1)))
        half = float(student_t.ppf(1 - alpha, n - 1)) * se
        low, high = mean - half, mean + half
    return Equivalence(metric, n, mean, low, high, margin, p, p < alpha)


def sample_flags(samples: list[dict], metric: str) -> dict[str, bool]:
    """{prompt: flag} for `metric` ("fa_<task>" reads as "fa") over one run's samples."""
    key = "fa" if metric.startswith("fa_") else metric
    if key not in FLAGS:
        raise ValueError(f"no per-sample flag for metric {metric!r}; known: {', '.join(FLAGS)}, fa_<task>")
    wanted, flag = FLAGS[key]
    return {r["prompt"]: flag(r) for r in samples if r.get("set") == wanted}


def compare_samples(samples_a: list[dict], samples_b: list[dict], metric: str, seed: int = 0) -> PairedDifference:
    """Paired difference A − B on the prompts both runs answered."""
    return compare_flags(sample_flags(samples_a, metric), sample_flags(samples_b, metric), metric, seed)


def compare_flags(fa: dict[str, bool], fb: dict[str, bool], metric: str = "", seed: int = 0) -> PairedDifference:
    """Paired difference A − B of two {prompt: flag} maps, on the prompts both have."""
    shared = [p for p in fa if p in fb]
    if not shared:
        raise ValueError(f"the two runs share no prompts for {metric}: they were evaluated on different sets")
    return paired_difference([fa[p] for p in shared], [fb[p] for p in shared], metric, seed)


def equivalence_of_flags(fa: dict[str, bool], fb: dict[str, bool], metric: str = "", margin: float = 5.0,
                         alpha: float = 0.05) -> Equivalence:
    """`equivalence` of two {prompt: flag} maps on the prompts both have."""
    shared = [p for p in fa if p in fb]
    if len(shared) < 2:
        raise ValueError(f"the two runs share {len(shared)} prompts for {metric}: evaluated on different sets?")
    return equivalence([fa[p] for p in shared], [fb[p] for p in shared], margin, alpha, metric)


def stratified_difference(strata: Sequence[tuple[dict[str, bool], dict[str, bool]]], metric: str = "",
                          seed: int = 0) -> PairedDifference:
    """A − B combined over strata (e.g. seeds: each stratum one pair of runs, {prompt: flag} for A and for B).

    Seeds are strata, not extra prompts: the same prompt answered under two seeds is one unit of the
    evaluation set, so the interval is a bootstrap over prompts that resamples each prompt with all its
    strata together. The difference is pooled over every (prompt, stratum) pair both runs answered; the exact
    McNemar test pools the discordant pairs of all strata (the conditional test for stratified matched pairs)."""
    from scipy.stats import binomtest  # deferred: scipy

    per_prompt: dict[str, list[float]] = {}
    only_a = only_b = pairs = 0
    for fa, fb in strata:
        for prompt in (p for p in fa if p in fb):
            a, b = fa[prompt], fb[prompt]
            only_a, only_b, pairs = only_a + (a and not b), only_b + (b and not a), pairs + 1
            cell = per_prompt.setdefault(prompt, [0.0, 0.0])
            cell[0] += 100.0 * (a - b)
            cell[1] += 1
    if not pairs:
        raise ValueError(f"the strata share no prompts for {metric}: they were evaluated on different sets")
    clusters = np.array(list(per_prompt.values()))
    low, high = bootstrap_ci(clusters, stat=lambda v, axis=0: v[:, 0].sum() / v[:, 1].sum(), seed=seed)
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return PairedDifference(metric, pairs, 100.0 * (only_a - only_b) / pairs, float(low), float(high), only_a,
                            only_b, float(p), strata=len(strata))
