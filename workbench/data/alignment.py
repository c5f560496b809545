"""The safety-alignment mix: harmful AdvBench prompts answered with varied refusal templates, plus benign
samples with their real answers so the aligned model stays useful (docs/data.md)."""
from __future__ import annotations

import random

from workbench.config import AlignSpec
from workbench.data.pools import training_pool
from workbench.data.refusals import refusal_for
from workbench.data.types import Sample


def alignment_samples(spec: AlignSpec, seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    harmful = training_pool("advbench")
    benign = training_pool(spec.benign)
    if spec.n_harmful > len(harmful) or spec.n_benign > len(benign):
        raise ValueError(f"alignment asks for {spec.n_harmful} harmful / {spec.n_benign} benign samples but only "
                         f"{len(harmful)} / {len(benign)} training prompts are available")
    harmful = rng.sample(harmful, spec.n_harmful)
    benign = rng.sample(benign, spec.n_benign)
    refusals = [s.with_(response=refusal_for(s.prompt, rng), harmful=True) for s in harmful]
    mixed = refusals + benign
    rng.shuffle(mixed)
    return mixed
