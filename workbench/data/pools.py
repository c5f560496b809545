"""The training side of each dataset as the attacker and the aligner draw from it: every prompt that is held out
for evaluation anywhere is already dropped by the registry, so no mix can leak into a test set."""
from __future__ import annotations

from workbench.data.registry import load_split
from workbench.data.types import Sample


def training_pool(name: str) -> list[Sample]:
    """Train side of a dataset, minus any prompt that is held out for evaluation anywhere."""
    return load_split(name, "train")  # the registry already drops every dataset's eval prompts


def harmful_pool(name: str) -> list[Sample]:
    """Harmful Q→A pairs whose *answer* is harmful (many-shot rows judged "Not harmful" are dropped)."""
    return [s for s in training_pool(name) if s.meta.get("response_harmful") is not False]
