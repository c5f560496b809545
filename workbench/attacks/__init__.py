"""Attack registry: an attack is a function AttackSpec -> training samples (the user's uploaded data).

The training itself (LoRA or full, `spec.train.method`) is the one loop in `workbench.training`; an
attack only decides what the attacker uploads. Add one: write a builder, add one line to ATTACKS.
"""
from __future__ import annotations

from typing import Callable

from workbench.config import AttackSpec
from workbench.data.types import Sample
from workbench.attacks.harmful_ft import benign_ft, harmful_ft, pure_bad

ATTACKS: dict[str, Callable[[AttackSpec], list[Sample]]] = {
    "harmful_ft": harmful_ft,
    "pure_bad": pure_bad,
    "benign_ft": benign_ft,
}


def build_attack_data(spec: AttackSpec) -> list[Sample]:
    if spec.name not in ATTACKS:
        raise ValueError(f"unknown attack {spec.name!r}; known attacks: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[spec.name](spec)
