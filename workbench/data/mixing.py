"""The harmful fine-tuning mix: n samples, of which exactly round(p·n) are harmful.

Why exact counts: the harmful ratio p is the x-axis of the field's central plot (harmful score vs p),
so a mix must contain exactly the harmful count its config claims, reproducibly from its seed.
"""
from __future__ import annotations

import math
import random

from workbench.data.types import Sample


def harmful_count(p: float, n: int) -> int:
    """round(p·n) with Python's round (halves go to the even integer: p=0.5, n=5 → 2)."""
    return round(p * n)


def mix(benign: list[Sample], harmful: list[Sample], p: float, n: int, seed: int = 0) -> list[Sample]:
    """round(p·n) harmful + (n − that) benign samples, drawn without replacement, shuffled by `seed`."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"mix size n must be a positive integer, got {n!r}")
    if not isinstance(p, (int, float)) or math.isnan(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"harmful ratio p must be in [0, 1], got {p!r}")
    k = harmful_count(p, n)
    for kind, pool, need in (("harmful", harmful, k), ("benign", benign, n - k)):
        if need > len(pool):
            raise ValueError(f"mix(p={p}, n={n}) needs {need} {kind} samples but only {len(pool)} are "
                             f"available; lower n or p, or use a larger {kind} dataset")
    rng = random.Random(seed)
    out = rng.sample(list(harmful), k) + rng.sample(list(benign), n - k)
    rng.shuffle(out)
    return out
