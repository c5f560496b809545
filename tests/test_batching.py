"""Length batching: every row once, at most max_rows a batch, and the least-padding cut equal to a brute-force
search over every contiguous cut of the sorted rows."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from workbench.data.batching import least_padding_batches, sorted_batches


def _cost(lengths, batches, overhead):
    return sum(len(b) * max(lengths[i] for i in b) + overhead for b in batches)


def _brute_force(lengths, max_rows, overhead):
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    best = float("inf")
    for k in range(len(order)):
        for cuts in itertools.combinations(range(1, len(order)), k):
            bounds = [0, *cuts, len(order)]
            batches = [order[a:b] for a, b in itertools.pairwise(bounds)]
            if all(len(b) <= max_rows for b in batches):
                best = min(best, _cost(lengths, batches, overhead))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_least_padding_batches_is_optimal_and_covers_every_row_once(seed):
    rng = np.random.default_rng(seed)
    lengths = [int(x) for x in rng.integers(5, 100, size=9)]
    for max_rows, overhead in ((4, 16), (9, 64), (2, 0)):
        batches = least_padding_batches(lengths, max_rows, overhead)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        assert all(1 <= len(b) <= max_rows for b in batches)
        assert _cost(lengths, batches, overhead) == _brute_force(lengths, max_rows, overhead)


def test_least_padding_batches_splits_one_long_prompt_off():
    """The quickstart's 16 harmless validation prompts: one 96-token prompt padded the other 15 to 96."""
    lengths = [36, 58, 46, 67, 43, 41, 37, 96, 41, 48, 55, 37, 37, 39, 38, 62]
    batches = least_padding_batches(lengths, 16, 64)
    assert [lengths[i] for i in batches[-1]] == [96]
    assert _cost(lengths, batches, 0) < 0.6 * 16 * 96
    with pytest.raises(ValueError, match="max_rows"):
        least_padding_batches(lengths, 0)


def test_sorted_batches_orders_by_length_both_ways():
    lengths = [3, 1, 2, 1]
    assert sorted_batches(lengths, 2) == [[1, 3], [2, 0]]
    assert sorted_batches(lengths, 3, longest_first=True) == [[0, 2, 1], [3]]
