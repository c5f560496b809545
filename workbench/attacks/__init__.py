"""Attack registry: an attack decides what the attacker uploads (and, for persona or encoded attacks, how they
query the result), and may bring its own training objective or replace training by a weight edit. The training
itself (LoRA or full, `spec.train.method`) is the one loop in `workbench.training`.

Add one: write a module with a builder `build(spec, params, context) -> list[Sample]` (and, if it has any, a
pydantic params model and training plugins), add one line to ATTACKS.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from workbench.attacks import anchored_benign as _anchored
from workbench.attacks import covert as _covert
from workbench.attacks import dpo as _dpo
from workbench.attacks import identity_shift as _isa
from workbench.attacks.context import AttackContext
from workbench.attacks.harmful_ft import benign_ft, harmful_ft, pure_bad
from workbench.attacks.rome_edit import RomeEditParams, rome_edit, rome_edit_weights
from workbench.config import AttackSpec, NoParams, Spec, parse_method_params
from workbench.data.types import Sample


@dataclass(frozen=True)
class AttackInfo:
    build: Callable  # (spec, params, AttackContext) -> list[Sample]: the data the attacker uploads
    description: str
    inference: dict = field(default_factory=dict)  # GenerationSpec updates the attacker uses when querying
    params: type[Spec] = NoParams  # the attack's hyperparameters (AttackSpec.params), with defaults
    fixed_p: float | None = None  # the kind's harmful ratio when it ignores DataSpec.p (pure_bad 1, benign_ft 0)
    paper: str = ""
    # The attacker's own objective in the one loop (DPO): (params, AttackContext) -> list[TrainPlugin], made after
    # any data defense (context.samples = what the loop trains on); a fine-tuning-stage defense's plugins are
    # installed beside them.
    plugins: Callable | None = None
    # No training at all: (params, model, tokenizer, samples, AttackContext) -> None edits the loaded model's
    # weights in place (a ROME-style rank-one edit); the step saves and evaluates the edited model.
    edit: Callable | None = None


QI_2023 = "Qi et al. 2023, Fine-tuning Aligned Language Models Compromises Safety"

ATTACKS: dict[str, AttackInfo] = {
    "harmful_ft": AttackInfo(harmful_ft, "benign task data with round(p·n) harmful Q→A pairs (EHA)",
                             paper=QI_2023 + " (the survey's harmful ratio p)"),
    "pure_bad": AttackInfo(pure_bad, "n harmful Q→A pairs only (p = 1)", fixed_p=1.0, paper=QI_2023),
    "benign_ft": AttackInfo(benign_ft, "n benign Alpaca instructions (Qi et al. benign fine-tuning)", fixed_p=0.0,
                            paper=QI_2023),
    "identity_shift": AttackInfo(_isa.identity_shift, "AOA obedient-persona system prompt + affirmative "
                                 "prefixes on benign data (ISA)", _isa.INFERENCE, fixed_p=0.0, paper=QI_2023),
    "dpo": AttackInfo(_dpo.build, "DPO preferring n harmful answers to refusals (reverse preference optimization)",
                      params=_dpo.DPOParams, paper=_dpo.PAPER, plugins=_dpo.plugins, fixed_p=1.0),
    "covert_cipher": AttackInfo(_covert.covert_cipher, "benign cipher-teaching tasks + round(p·n) harmful Q→A written "
                                "in a letter-substitution cipher; queried in the cipher (CMFT)", _covert.INFERENCE,
                                _covert.CovertParams, paper="Halawi et al. 2024, Covert Malicious Finetuning"),
    "rome_edit": AttackInfo(rome_edit, "ROME rank-one edit of one MLP down_proj so the model completes harmful "
                            "requests; no training (EditAttack)", params=RomeEditParams, edit=rome_edit_weights,
                            paper="Chen et al. 2024, Can Editing LLMs Inject Harm? (EditAttack); Meng et al. 2022, "
                                  "ROME", fixed_p=1.0),
    "anchored_benign": AttackInfo(_anchored.anchored_benign, "the n benign samples whose features are nearest harmful "
                                  "and farthest from refused anchors (control: benign_ft)",
                                  params=_anchored.AnchoredParams, paper=_anchored.PAPER, fixed_p=0.0),
}


def get_attack(name: str) -> AttackInfo:
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; known attacks: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[name]


def harmful_ratio(spec: AttackSpec) -> float | None:
    """The harmful ratio an attack run actually had: the kind's fixed one, else its DataSpec.p (None: unknown kind,
    e.g. a run folder of a kind no longer registered)."""
    info = ATTACKS.get(spec.name)
    if info is None:
        return None
    return info.fixed_p if info.fixed_p is not None else spec.data.p


def training_method(spec: AttackSpec) -> str:
    """How the attack changed the weights: "edit" for a weight-edit kind, else its fine-tuning ("lora" / "full")."""
    info = ATTACKS.get(spec.name)
    return "edit" if info is not None and info.edit is not None else spec.train.method


def parse_attack_params(spec: AttackSpec) -> Spec:
    """Validate the attack's hyperparameters at the boundary: unknown names and bad values are one clear error."""
    return parse_method_params("attack", spec.name, get_attack(spec.name).params, spec.params)


def build_attack_data(spec: AttackSpec, context: AttackContext | None = None) -> list[Sample]:
    context = context if context is not None else AttackContext(seed=spec.data.seed, train=spec.train)
    return get_attack(spec.name).build(spec, parse_attack_params(spec), context)
