"""What an alignment- or fine-tuning-stage defense is given: `TrainingContext`.

`plugins(params, context)` and a fine-tuning defense's `data(params, samples, context)` read the training data,
the model being trained (the aligned model a fine-tuning defense guards: a registered name or folder), the
step's seed and training spec; they write what they want reported (filtration precision / recall, the layers
Freeze chose, …) into `context.notes`, which the step records in training.json and metrics.json.
The post-fine-tuning stage's counterpart is `workbench.defenses.post.common.RepairContext`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from workbench.config import TrainSpec
from workbench.data.types import Sample


@dataclass(frozen=True)
class TrainingContext:
    samples: list[Sample]  # the training data (after a data defense, what the loop trains on)
    model: str  # the model the step trains: registered name or folder
    seed: int = 0
    train: TrainSpec = field(default_factory=TrainSpec)
    notes: dict = field(default_factory=dict)  # the defense's report, by defense name
