"""Spearman rank correlation across models with a bootstrap interval over models.

The unit is the aligned model: a bootstrap resample draws n models with replacement (x and y stay paired), and the
interval is the percentile interval of ρ over the resamples. A resample in which x or y is constant has no ρ and is
left out (`n_boot_used` says how many counted). With fewer than 3 models there is no ρ at all.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import stats

MIN_MODELS = 3


class RankCorrelation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rho: float | None  # Spearman ρ (None: fewer than MIN_MODELS models, or a constant variable)
    low: float | None  # bootstrap percentile interval at `level`
    high: float | None
    n: int  # models
    p_value: float | None  # scipy's test of ρ = 0 (t approximation)
    level: float
    n_boot: int
    n_boot_used: int  # resamples with a defined ρ
    note: str = ""


def _row_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ρ of each row pair of [B, n] arrays: Pearson of the average ranks; NaN where a row is constant."""
    rx, ry = stats.rankdata(x, axis=1), stats.rankdata(y, axis=1)
    rx, ry = rx - rx.mean(1, keepdims=True), ry - ry.mean(1, keepdims=True)
    den = np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(1) / np.where(den > 0, den, 1.0), np.nan)


def rank_correlation(x: Sequence[float], y: Sequence[float], n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> RankCorrelation:
    """Spearman ρ of (x, y) over models, with a seeded bootstrap percentile interval (module doc)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of one length, got {x.shape} and {y.shape}")
    n = len(x)
    empty = dict(rho=None, low=None, high=None, n=n, p_value=None, level=level, n_boot=n_boot, n_boot_used=0)
    if n < MIN_MODELS:
        return RankCorrelation(**empty, note=f"{n} model(s): a rank correlation needs at least {MIN_MODELS}")
    if np.all(x == x[0]) or np.all(y == y[0]):
        return RankCorrelation(**empty, note="constant across models: no rank correlation")
    res = stats.spearmanr(x, y)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    boot = _row_spearman(x[idx], y[idx])
    boot = boot[~np.isnan(boot)]
    tail = (1 - level) / 2
    low, high = (float(np.quantile(boot, tail)), float(np.quantile(boot, 1 - tail))) if len(boot) else (None, None)
    p = float(res.pvalue)
    return RankCorrelation(rho=float(res.statistic), low=low, high=high, n=n,
                           p_value=p if math.isfinite(p) else None, level=level, n_boot=n_boot,
                           n_boot_used=int(len(boot)))
