"""Planned power of the paired McNemar comparison, and seeds combined as strata."""
from __future__ import annotations

import math

import pytest

from workbench.evaluation.paired import compare_flags, stratified_difference
from workbench.evaluation.power import mcnemar_mde, mcnemar_power, mcnemar_sample_size


def test_sample_size_matches_connors_worked_examples():
    # Connor (1987), Biometrics 43:207–211, p. 209, as worked by public calculators:
    # p01 = 0.45, p10 = 0.05 (ψ = 0.5, δ = 0.4), α = 0.05 two-sided, power 0.8 → 23 pairs
    assert mcnemar_sample_size(0.5, 0.4) == 23
    # ψ = 0.45, δ = 0.15 (discordant odds ratio 2) → 155 pairs, achieved power 80.1 %
    assert mcnemar_sample_size(0.45, 0.15) == 155
    assert mcnemar_power(155, 0.45, 0.15) == pytest.approx(0.801, abs=0.001)


def test_the_minimum_detectable_difference_inverts_the_power():
    mde = mcnemar_mde(155, 0.45)
    assert mde < 0.15 and mcnemar_power(155, 0.45, mde) == pytest.approx(0.8, abs=1e-6)
    assert mcnemar_mde(600, 0.45) < mde  # more pairs, smaller detectable differences
    assert mcnemar_mde(100, 0.1) < mcnemar_mde(100, 0.3)  # models that rarely disagree: small effects show
    assert mcnemar_mde(2, 0.05) is None  # nothing is detectable with two pairs that rarely disagree
    with pytest.raises(ValueError, match="discordance"):
        mcnemar_mde(100, 0.0)


def test_seeds_combine_as_strata_not_as_extra_prompts():
    prompts = [f"q{i}" for i in range(40)]
    a = {p: i < 12 for i, p in enumerate(prompts)}  # A flags 12 prompts, B flags 4 of them
    b = {p: i < 4 for i, p in enumerate(prompts)}
    one = compare_flags(a, b, "hs")
    two = stratified_difference([(a, b), (a, b)], "hs")
    assert (two.only_a, two.only_b, two.n, two.strata) == (16, 0, 80, 2)
    assert two.value == pytest.approx(one.value) == pytest.approx(20.0)
    # the same 40 prompts twice are still 40 prompts: the interval does not shrink as if there were 80
    assert (two.high - two.low) == pytest.approx(one.high - one.low, rel=0.25)
    assert two.p_value < one.p_value  # the exact test pools the discordant pairs of both seeds
    assert math.isclose(two.p_value, 2 * 0.5**16)
