"""Planned power of the paired comparison: the smallest difference the McNemar test can detect at a table's n.

Why: most defense rows differ from SFT by less than their intervals, and "no significant difference" means little
unless the reader knows how large a difference the test could have found. For paired binary outcomes the power
depends on n and on the discordance rate ψ = P(the two models disagree on a prompt) = p10 + p01, and on the
difference δ = p10 − p01 (Connor 1987, Biometrics 43:207–211, normal approximation):

    n = [z(1−α/2)·√ψ + z(1−β)·√(ψ − δ²)]² / δ²
    power(n, ψ, δ) = Φ((δ√n − z(1−α/2)√ψ) / √(ψ − δ²)) + Φ((−δ√n − z(1−α/2)√ψ) / √(ψ − δ²))

The minimum detectable difference (MDE) inverts the power for δ in (0, ψ]. ψ is pooled over a whole grid (every
defense against SFT on the same metric), so each row's MDE is planned from the design, not from its own outcome.
scipy has no McNemar power; the formulas are two lines, written here.
"""
from __future__ import annotations

import math

from scipy.optimize import brentq
from scipy.stats import norm


def _check(p_disc: float, alpha: float) -> None:
    if not 0.0 < p_disc <= 1.0:
        raise ValueError(f"the discordance rate must be in (0, 1], got {p_disc}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def mcnemar_power(n: int, p_disc: float, delta: float, alpha: float = 0.05) -> float:
    """Power of the two-sided McNemar test with n pairs, discordance ψ = p_disc and difference δ = delta."""
    _check(p_disc, alpha)
    delta = abs(delta)
    if delta == 0:
        return alpha
    if delta > p_disc:
        raise ValueError(f"|p10 − p01| = {delta} cannot exceed the discordance rate p10 + p01 = {p_disc}")
    z = norm.ppf(1 - alpha / 2)
    sd = math.sqrt(max(p_disc - delta**2, 1e-12))
    return float(norm.cdf((delta * math.sqrt(n) - z * math.sqrt(p_disc)) / sd)
                 + norm.cdf((-delta * math.sqrt(n) - z * math.sqrt(p_disc)) / sd))


def mcnemar_sample_size(p_disc: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Pairs needed to detect δ with the given power (rounded up)."""
    _check(p_disc, alpha)
    delta = abs(delta)
    if not 0 < delta <= p_disc:
        raise ValueError(f"need 0 < |δ| ≤ ψ, got δ = {delta}, ψ = {p_disc}")
    za, zb = norm.ppf(1 - alpha / 2), norm.ppf(power)
    return math.ceil((za * math.sqrt(p_disc) + zb * math.sqrt(p_disc - delta**2)) ** 2 / delta**2)


def mcnemar_mde(n: int, p_disc: float, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest |p10 − p01| the test detects with `power` at n pairs (a proportion); None when even a
    difference as large as the discordance itself (every disagreement one way) stays below that power."""
    _check(p_disc, alpha)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if mcnemar_power(n, p_disc, p_disc, alpha) < power:
        return None
    return float(brentq(lambda d: mcnemar_power(n, p_disc, d, alpha) - power, 1e-9, p_disc, xtol=1e-10))
