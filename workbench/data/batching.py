"""Batches of similar-length rows: on a CPU every padded token is compute thrown away."""
from __future__ import annotations

from collections.abc import Sequence


def sorted_batches(lengths: Sequence[int], batch_size: int, longest_first: bool = False) -> list[list[int]]:
    """Indices sorted by length (ties by index) in batches of `batch_size`: each row's result is its own, and the
    rows of a batch are padded to similar widths."""
    sign = -1 if longest_first else 1
    order = sorted(range(len(lengths)), key=lambda i: (sign * lengths[i], i))
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]


def least_padding_batches(lengths: Sequence[int], max_rows: int, overhead: int = 64) -> list[list[int]]:
    """Indices sorted by length, cut into batches of at most `max_rows` where the padded token count plus
    `overhead` token-equivalents per batch (a forward's fixed cost) is least.

    Fixed-size batches cannot help when all rows fit one batch: 16 prompts of 36-96 tokens padded to 96 waste half
    the forward. Contiguous runs of the sorted order are optimal for this cost, so an O(n · max_rows) dynamic
    program finds the exact minimum (no library does this cut).
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: least cost of the first j sorted rows
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        width = lengths[order[j - 1]]  # the longest row of any batch ending at j
        for i in range(max(0, j - max_rows), j):
            cost = best[i] + (j - i) * width + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    batches, j = [], n
    while j > 0:
        batches.append(order[cut[j]:j])
        j = cut[j]
    return batches[::-1]
