"""SafeInstr: mix a small share of safety examples into the user's data (Bianchi, Suzgun, Attanasio, Röttger,
Jurafsky, Hashimoto & Zou, "Safety-Tuned LLaMAs: Lessons From Improving the Safety of Large Language Models that
Follow Instructions", ICLR 2024, arXiv:2309.07875).

The provider adds k = round(share · n) refusal examples to the n user samples (k = `n` when given; at least 1
when share > 0), then shuffles (seeded). Safety examples are AdvBench TRAIN prompts (never an evaluation prompt)
answered with the varied refusal templates of `workbench.data.refusals` (`common.refusal_samples`) — the paper
uses harmful instructions with safe answers written by a model.

Default share 0.03: the paper's headline finding is that adding 3 % safety examples already improves safety
substantially (they add 100–2000 to 20,000 instructions, 0.5–10 %). The number added is in the training notes
under "safeinstr"; the examples carry `harmful=True` (the *request* is harmful, as in the alignment mix) and
`meta["safety_example"] = True`, so `n_harmful_trained` in the notes counts them too.
"""
from __future__ import annotations

import random

from pydantic import Field

from workbench.config import Spec
from workbench.data.types import Sample
from workbench.defenses.context import TrainingContext
from workbench.defenses.finetune.common import refusal_samples


class SafeInstrParams(Spec):
    share: float = Field(0.03, ge=0, le=1)  # safety examples per user sample
    n: int | None = Field(None, ge=0)  # absolute number instead of share


def n_safety(params: SafeInstrParams, n_user: int) -> int:
    if params.n is not None:
        return params.n
    return max(1, round(params.share * n_user)) if params.share > 0 else 0


def mix_in(samples: list[Sample], extra: list[Sample], seed: int) -> list[Sample]:
    """The user samples plus `extra`, shuffled together by `seed`."""
    out = list(samples) + list(extra)
    random.Random(f"mix/{seed}").shuffle(out)
    return out


def data(params: SafeInstrParams, samples: list[Sample], context: TrainingContext) -> list[Sample]:
    seed = context.seed
    k = n_safety(params, len(samples))
    context.notes["safeinstr"] = {"n_safety_added": k, "share": params.share}
    return mix_in(samples, refusal_samples(k, seed, source="safeinstr"), seed)


def plugins(params, context: TrainingContext) -> list:
    return []
