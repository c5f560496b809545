"""Attack registry: an attack decides what the attacker uploads (and, for persona or encoded attacks, how they
query the result), and may bring its own training objective or replace training by a weight edit. The training
itself (LoRA or full, `spec.train.method`) is the one loop in `workbench.training`.

Add one: write a module with a builder `build(spec, params, context) -> list[Sample]` (and, if it has any, a
pydantic params model), add one line to ATTACKS.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from workbench.attacks import anchored_benign as _anchored
from workbench.attacks import identity_shift as _isa
from workbench.attacks.context import AttackContext
from workbench.attacks.harmful_ft import benign_ft, harmful_ft, pure_bad
from workbench.config import AttackSpec, Spec
from workbench.data.types import Sample


class NoParams(Spec):
    pass


@dataclass(frozen=True)
class AttackInfo:
    build: Callable  # (spec, params, AttackContext) -> list[Sample]: the data the attacker uploads
    description: str
    inference: dict = field(default_factory=dict)  # GenerationSpec updates the attacker uses when querying
    params: type[Spec] = NoParams  # the attack's hyperparameters (AttackSpec.params), with defaults
    paper: str = ""
    # The attacker's own objective in the one loop (DPO): (params, AttackContext) -> list[TrainPlugin]; a
    # fine-tuning-stage defense's plugins are installed beside them.
    plugins: Callable | None = None
    # No training at all: (params, model, tokenizer, samples, AttackContext) -> None edits the loaded model's
    # weights in place (a ROME-style rank-one edit); the step saves and evaluates the edited model.
    edit: Callable | None = None


ATTACKS: dict[str, AttackInfo] = {
    "harmful_ft": AttackInfo(harmful_ft, "benign task data with round(p·n) harmful Q→A pairs (EHA)"),
    "pure_bad": AttackInfo(pure_bad, "n harmful Q→A pairs only (p = 1)"),
    "benign_ft": AttackInfo(benign_ft, "n benign Alpaca instructions (Qi et al. benign fine-tuning)"),
    "identity_shift": AttackInfo(_isa.identity_shift, "AOA obedient-persona system prompt + affirmative "
                                 "prefixes on benign data (ISA)", _isa.INFERENCE),
    "anchored_benign": AttackInfo(_anchored.anchored_benign, "the n benign samples whose features are nearest harmful "
                                  "and farthest from refused anchors (control: benign_ft)",
                                  params=_anchored.AnchoredParams, paper=_anchored.PAPER),
}


def get_attack(name: str) -> AttackInfo:
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known attacks: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[name]


def parse_attack_params(spec: AttackSpec) -> Spec:
    """Validate the attack's hyperparameters at the boundary: unknown names and bad values are one clear error."""
    info = get_attack(spec.name)
    try:
        return info.params(**spec.params)
    except ValidationError as e:
        fields = ", ".join(info.params.model_fields) or "none"
        raise ValueError(f"bad hyperparameters for attack {spec.name!r}: {e.errors()[0]['msg']} "
                         f"({e.errors()[0]['loc']}); it accepts: {fields}") from None


def build_attack_data(spec: AttackSpec, context: AttackContext | None = None) -> list[Sample]:
    context = context if context is not None else AttackContext(seed=spec.data.seed, train=spec.train)
    return get_attack(spec.name).build(spec, parse_attack_params(spec), context)
