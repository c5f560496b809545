"""The first configurations every defense faces: a seeded quasi-random design over the search space.

Why a design before TPE: comparing defenses by their worst case is fair only if each starts from the same
configurations, and TPE needs a spread-out start. A scrambled Halton sequence (scipy.stats.qmc; Owen 2017) fills
the unit cube of the free dimensions more evenly than independent draws, for any number of points (Sobol is
balanced only at powers of two); `SearchSpace.from_unit` maps each point into the space. The design is a pure
function of (space, seed, size), computed on the driver and enqueued before the first trial, so it is the same
locally and on Ray, and the same for every defense under one threat model. TPE (Bergstra et al. 2011) takes over
after it, its start-up trials set to the design's size.
"""
from __future__ import annotations

from typing import Any

from scipy.stats import qmc

from workbench.stress.space import SearchSpace

DESIGN_SIZE = 8


def design(space: SearchSpace, seed: int, size: int = DESIGN_SIZE) -> list[dict[str, Any]]:
    """`size` trial parameter sets (only the free dimensions, as `SearchSpace.suggest` names them)."""
    if size < 1:
        raise ValueError(f"design size must be at least 1, got {size}")
    points = qmc.Halton(d=len(space.free), scramble=True, seed=seed).random(size)
    return [space.from_unit([float(x) for x in row]) for row in points]
