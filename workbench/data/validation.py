"""A validation split for choosing hyperparameters without touching the evaluation prompts.

The held-out eval sets (harness.eval_sets) are for reporting; picking, say, Vaccine's ρ on them would report a
tuned number. The validation sets are prompts from the *train* side of the same datasets that the preset's
alignment mix did not use (for that seed), nor the attacker's harmful Q→A pool:

    harmful   AdvBench train-side prompts outside the alignment mix   → refusal / HS after an attack
    benign    Alpaca train-side prompts outside the alignment mix      → over-refusal

No fixed task (FA) set: the attack mixes draw their task samples from the task's train side by p, n and seed, so no
fixed part of it is guaranteed unseen. Where a choice must respect FA (the stress test's FA floor), the validation
task set is per model: the first task prompts of the train side (in the registry's seeded order) that neither the
alignment mix nor that model's own fine-tuning data holds (`validation_task_set`).
"""
from __future__ import annotations

from collections.abc import Collection

from workbench.data.alignment import alignment_samples
from workbench.data.pools import harmful_pool, training_pool
from workbench.data.types import Sample
from workbench.presets import preset


def validation_sets(preset_name: str, seed: int, n_harmful: int, n_benign: int) -> tuple[list[Sample], list[Sample]]:
    """(harmful, benign) validation prompts for models aligned with `preset_name`'s alignment mix at `seed`."""
    align = preset(preset_name, seed).align
    trained = {s.uid for s in alignment_samples(align, seed)} | {s.uid for s in harmful_pool("harmful_qa")}
    harmful = [s for s in training_pool("advbench") if s.uid not in trained]
    benign = [s for s in training_pool(align.benign) if s.uid not in trained]
    if n_harmful > len(harmful) or n_benign > len(benign):
        raise ValueError(f"the validation split of preset {preset_name!r} has {len(harmful)} harmful and "
                         f"{len(benign)} benign prompts; asked for {n_harmful} / {n_benign} "
                         f"(lower --n-harmful / --n-benign)")
    return harmful[:n_harmful], benign[:n_benign]


def validation_task_set(preset_name: str, seed: int, task: str, n: int, trained_on: Collection[str]) -> list[Sample]:
    """`n` prompts of `task`'s train side that a model fine-tuned on the samples with uids `trained_on` (after
    `preset_name`'s alignment mix at `seed`) never saw: its validation FA set (module doc). Two models trained on
    different data get sets that differ in the few prompts one of them trained on."""
    seen = {s.uid for s in alignment_samples(preset(preset_name, seed).align, seed)} | set(trained_on)
    unseen = [s for s in training_pool(task) if s.uid not in seen]
    if n > len(unseen):
        raise ValueError(f"the validation split of task {task!r} has {len(unseen)} unseen prompts; asked for {n}")
    return unseen[:n]
