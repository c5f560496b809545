"""Defense registry shared by the three stages (alignment, fine-tuning, post-fine-tuning).

A defense is one module: a pydantic spec of its hyperparameters (with defaults) and a factory returning
the training plugins it installs into the one loop (`workbench.training.plugins`). Adding one = one new
file + one line in DEFENSES.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from pydantic import ValidationError

from workbench.config import Spec

Stage = Literal["alignment", "finetune", "post"]


class NoParams(Spec):
    pass


@dataclass(frozen=True)
class DefenseInfo:
    name: str
    stage: Stage
    params: type[Spec]
    plugins: Callable  # (params, context) -> list[TrainPlugin]
    paper: str = ""


def _no_plugins(params, context) -> list:
    return []


DEFENSES: dict[str, DefenseInfo] = {
    "sft": DefenseInfo("sft", "alignment", NoParams, _no_plugins, "Supervised safety fine-tuning (baseline)"),
}


def get_defense(name: str, stage: Stage | None = None) -> DefenseInfo:
    if name not in DEFENSES:
        raise ValueError(f"unknown defense {name!r}; known defenses: {', '.join(sorted(DEFENSES))}")
    info = DEFENSES[name]
    if stage is not None and info.stage != stage:
        raise ValueError(f"defense {name!r} is a {info.stage}-stage defense, not {stage}")
    return info


def parse_params(info: DefenseInfo, params: dict) -> Spec:
    """Validate hyperparameters at the boundary: unknown names and bad values are one clear error."""
    try:
        return info.params(**params)
    except ValidationError as e:
        fields = ", ".join(info.params.model_fields) or "none"
        raise ValueError(f"bad hyperparameters for defense {info.name!r}: {e.errors()[0]['msg']} "
                         f"({e.errors()[0]['loc']}); it accepts: {fields}") from None
