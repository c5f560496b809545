"""What an attack is given besides its spec: `AttackContext`.

An attack's `build(spec, params, context)` may need the model it attacks (anchored benign selection ranks the
benign pool by that model's gradients; an edit rewrites its weights); it writes what it wants reported (what a
moderation filter sees of its data, the selection's scores, the edit's effect) into `context.notes`, which the
step records in training.json and metrics.json, as a fine-tuning defense does with `TrainingContext.notes`. Its
`plugins(params, context)` also get `context.samples`, the data the loop trains on (DPO looks up each row's rejected
answer by the batch's `index`).

`moderation` is the judge loader (`evaluation.moderation.get_judge`), handed in by the step: an attack that reports
what a data filter would flag scores its upload with the project's judge, while building the data alone
(`build_attack_data`, the sweep's and the stress search's previews) never loads a judge. None when only the data is
wanted.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from workbench.config import TrainSpec
from workbench.data.types import Sample


class Moderation(Protocol):
    """What an attack uses of a moderation judge (`evaluation.moderation.ModerationJudge`)."""

    name: str
    version: str

    def p_harmful(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]: ...


@dataclass(frozen=True)
class AttackContext:
    model: str = ""  # the model attacked: registered name or folder ("" when only the data is wanted)
    seed: int = 0
    train: TrainSpec = field(default_factory=TrainSpec)
    notes: dict = field(default_factory=dict)  # the attack's report, recorded with the run
    # what the loop trains on, whose positions batches carry as `index`: the built data after any data defense
    # (filtered, with safety examples mixed in); set by the step for `plugins`, empty for `build`
    samples: list[Sample] = field(default_factory=list)
    moderation: Callable[[str], Moderation] | None = None  # judge spec → judge (module doc)
