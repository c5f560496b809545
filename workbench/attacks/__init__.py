"""Attack registry: an attack decides what the attacker uploads (and, for persona attacks, the system
prompt they use at inference). The training itself (LoRA or full, `spec.train.method`) is the one loop
in `workbench.training`. Add one: write a builder module, add one line to ATTACKS.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from workbench.attacks import identity_shift as _isa
from workbench.attacks.harmful_ft import benign_ft, harmful_ft, pure_bad
from workbench.config import AttackSpec
from workbench.data.types import Sample


@dataclass(frozen=True)
class AttackInfo:
    build: Callable[[AttackSpec], list[Sample]]
    description: str
    inference: dict = field(default_factory=dict)  # GenerationSpec updates the attacker uses when querying


ATTACKS: dict[str, AttackInfo] = {
    "harmful_ft": AttackInfo(harmful_ft, "benign task data with round(p·n) harmful Q→A pairs (EHA)"),
    "pure_bad": AttackInfo(pure_bad, "n harmful Q→A pairs only (p = 1)"),
    "benign_ft": AttackInfo(benign_ft, "n benign Alpaca instructions (Qi et al. benign fine-tuning)"),
    "identity_shift": AttackInfo(_isa.identity_shift, "AOA obedient-persona system prompt + affirmative "
                                 "prefixes on benign data (ISA)", _isa.INFERENCE),
}


def get_attack(name: str) -> AttackInfo:
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known attacks: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[name]


def build_attack_data(spec: AttackSpec) -> list[Sample]:
    return get_attack(spec.name).build(spec)
