"""Planned power of the paired McNemar comparison, and seeds combined as strata."""
from __future__ import annotations

import math

import numpy as np
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


def test_equivalence_is_two_one_sided_t_tests_on_the_paired_differences():
    """TOST: equivalent only when both one-sided tests reject; checked against scipy's one-sample t-tests."""
    from scipy.stats import ttest_1samp

    from workbench.evaluation.paired import equivalence

    rng = np.random.default_rng(0)
    a = rng.random(300) < 0.4
    b = a.copy()
    b[:6] = ~b[:6]  # six discordant prompts: a difference of about 2 points
    e = equivalence(a, b, margin=5.0)
    d = 100.0 * (a.astype(float) - b.astype(float))
    p_low = ttest_1samp(d, -5.0, alternative="greater").pvalue
    p_high = ttest_1samp(d, 5.0, alternative="less").pvalue
    assert e.p_value == pytest.approx(max(p_low, p_high))
    assert e.equivalent and -5 < e.low < e.value < e.high < 5
    # a 20-point gap is not equivalent, and neither is a small n whose interval spans the margin
    far = equivalence(a, np.where(np.arange(300) < 60, ~a, a), margin=5.0)
    assert not far.equivalent and far.p_value > 0.05
    few = equivalence([True, False, True, False], [False, False, True, False], margin=5.0)
    assert not few.equivalent
    # identical answers: the difference is known exactly
    same = equivalence(a, a)
    assert same.equivalent and same.value == same.low == same.high == 0.0
    with pytest.raises(ValueError, match="margin"):
        equivalence(a, b, margin=0.0)
