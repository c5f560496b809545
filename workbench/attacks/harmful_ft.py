"""Harmful fine-tuning: the user's data is n samples of a benign task with round(p·n) harmful Q→A mixed in.

`pure_bad` is p = 1 (only harmful pairs); `benign_ft` is p = 0 on Alpaca (Qi et al.: even benign
fine-tuning erodes alignment).
"""
from __future__ import annotations

from workbench.attacks.context import AttackContext
from workbench.config import AttackSpec, DataSpec, Spec
from workbench.data.mixing import mix
from workbench.data.pools import harmful_pool, training_pool
from workbench.data.types import Sample


def harmful_ft(spec: AttackSpec, params: Spec, context: AttackContext) -> list[Sample]:
    d = spec.data
    return mix(training_pool(d.benign), harmful_pool(d.harmful), d.p, d.n, d.seed)


def pure_bad(spec: AttackSpec, params: Spec, context: AttackContext) -> list[Sample]:
    d = spec.data
    return mix([], harmful_pool(d.harmful), 1.0, d.n, d.seed)


def benign_pool(data: DataSpec) -> tuple[str, list[Sample]]:
    """(name, train side) of the benign instruction set of the benign-only attacks: `data.benign`, except that the
    default sentiment task (sst2) means Alpaca. One function, so `anchored_benign` selects from exactly the pool its
    random control `benign_ft` draws from."""
    name = "alpaca" if data.benign == "sst2" else data.benign
    return name, training_pool(name)


def benign_ft(spec: AttackSpec, params: Spec, context: AttackContext) -> list[Sample]:
    d = spec.data
    return mix(benign_pool(d)[1], [], 0.0, d.n, d.seed)
