"""Rates with sample counts and 95 % intervals: every metric the workbench reports goes through here."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from workbench.vocabulary import fmt_rate

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Rate:
    """k successes out of n, as a percentage with a Wilson 95 % interval."""

    k: int
    n: int
    value: float  # percent
    low: float  # percent
    high: float  # percent

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return fmt_rate(self)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (as fractions). Good at small n and at 0 or n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate(flags) -> Rate:
    flags = [bool(f) for f in flags]
    k, n = sum(flags), len(flags)
    lo, hi = wilson(k, n)
    return Rate(k=k, n=n, value=100.0 * k / n if n else float("nan"), low=100.0 * lo, high=100.0 * hi)


def bootstrap_ci(values, stat=np.mean, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of `stat` over the first axis of `values`."""
    values = np.asarray(values)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    stats = np.array([stat(values[i], axis=0) if values.ndim > 1 else stat(values[i]) for i in idx])
    return (float(np.quantile(stats, alpha / 2, axis=0)), float(np.quantile(stats, 1 - alpha / 2, axis=0))) \
        if stats.ndim == 1 else (np.quantile(stats, alpha / 2, axis=0), np.quantile(stats, 1 - alpha / 2, axis=0))
