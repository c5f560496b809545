"""AUROC with its DeLong variance, and DeLong's test for two correlated ROC curves (two judges on the same rows).

Method: DeLong, DeLong & Clarke-Pearson (1988), "Comparing the areas under two or more correlated receiver operating
characteristic curves: a nonparametric approach", Biometrics 44(3). The AUC is the Mann–Whitney statistic
θ = (1/mn) Σ_i Σ_j ψ(X_i, Y_j) over the m harmful (positive) and n benign (negative) rows, ψ = 1 when the positive
scores higher, ½ on a tie; its variance comes from the structural components V10_i (the share of negatives below
positive i) and V01_j (the share of positives above negative j): S = S10 / m + S01 / n with S10, S01 their sample
covariance matrices across the compared scores. Computed in O(N log N) from mid-ranks, as in Sun & Xu (2014), "Fast
implementation of DeLong's algorithm for comparing the areas under correlated receiver operating characteristic
curves", IEEE Signal Processing Letters 21(11).

Why it is written here: scikit-learn (`roc_auc_score`, which the tests compare θ with), scipy and statsmodels give
the AUC but neither its DeLong variance nor the paired test, and no installed package does (pROC is R).

Intervals: θ ± z·SE (Wald, on the AUC scale, clipped to [0, 1]; pROC's `ci.auc` default), and the paired difference
θ_a − θ_b ± z·SE with the two-sided p-value of z = (θ_a − θ_b) / SE. Undefined (None) without at least two rows of
each class: the sample covariances need two.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

from workbench.evaluation.stats import Z95


@dataclass(frozen=True)
class Auc:
    """AUROC with its DeLong standard error and Wald 95 % interval (None when undefined, module doc)."""

    value: float
    se: float | None
    low: float | None
    high: float | None
    n_pos: int
    n_neg: int


@dataclass(frozen=True)
class PairedAuc:
    """DeLong's test of θ_a − θ_b on the same rows: the difference, its 95 % interval and two-sided p-value."""

    auc_a: float
    auc_b: float
    diff: float
    se: float
    low: float
    high: float
    z: float
    p: float
    n_pos: int
    n_neg: int


def delong_components(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """(θ [k], S [k, k]) for k score vectors (`scores` [k, N] or [N]) against binary `labels` [N] (1 = positive).

    S is DeLong's covariance of the k AUCs (module doc), NaN when a class has fewer than two rows."""
    y = np.asarray(labels).astype(bool)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if s.shape[1] != len(y):
        raise ValueError(f"{s.shape[1]} scores but {len(y)} labels")
    m, n = int(y.sum()), int((~y).sum())
    if m == 0 or n == 0:
        raise ValueError(f"AUROC needs both classes: {m} positive and {n} negative rows")
    pos, neg = s[:, y], s[:, ~y]
    rank_all = rankdata(np.concatenate([pos, neg], axis=1), axis=1)  # mid-ranks over all rows
    rank_pos, rank_neg = rankdata(pos, axis=1), rankdata(neg, axis=1)  # mid-ranks within each class
    v10 = (rank_all[:, :m] - rank_pos) / n  # per positive: the share of negatives it beats (ties ½)
    v01 = 1.0 - (rank_all[:, m:] - rank_neg) / m  # per negative: the share of positives that beat it
    theta = v10.mean(axis=1)
    if m < 2 or n < 2:
        return theta, np.full((len(theta), len(theta)), np.nan)
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return theta, cov


def auroc(labels, scores, z: float = Z95) -> Auc:
    """θ with its DeLong SE and Wald interval; ValueError when a class is empty."""
    y = np.asarray(labels).astype(bool)
    theta, cov = delong_components(y, scores)
    value, var = float(theta[0]), float(cov[0, 0])
    m, n = int(y.sum()), int((~y).sum())
    if not np.isfinite(var):
        return Auc(value, None, None, None, m, n)
    se = float(np.sqrt(max(var, 0.0)))
    return Auc(value, se, max(0.0, value - z * se), min(1.0, value + z * se), m, n)


def delong_test(labels, scores_a, scores_b, z: float = Z95) -> PairedAuc | None:
    """DeLong's paired test of two score vectors on the same rows; None when a class has < 2 rows or the
    difference has zero variance (identical rankings)."""
    y = np.asarray(labels).astype(bool)
    theta, cov = delong_components(y, np.vstack([np.asarray(scores_a, float), np.asarray(scores_b, float)]))
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if not np.isfinite(var) or var <= 1e-15:
        return None
    se = float(np.sqrt(var))
    diff = float(theta[0] - theta[1])
    stat = diff / se
    return PairedAuc(auc_a=float(theta[0]), auc_b=float(theta[1]), diff=diff, se=se, low=diff - z * se,
                     high=diff + z * se, z=stat, p=float(2 * norm.sf(abs(stat))), n_pos=int(y.sum()),
                     n_neg=int((~y).sum()))
