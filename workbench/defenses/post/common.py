"""What a post-fine-tuning repair gets and gives back.

`RepairContext`: references (registered name, HF folder or run folder) of the attacked model and, when the
method needs them, the aligned and unaligned models, plus what the attacked run recorded about its
fine-tuning (`adapted_modules`: LoRA targets, or None for a full fine-tune / unknown).
`RepairResult`: the repaired model (plain HF model, merged), its tokenizer, a JSON report of what changed,
and `files`: extra artifacts as {relative path: writer(path)} (e.g. Antidote's `PruneRecord.save`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RepairContext:
    attacked: str
    aligned: str | None = None
    unaligned: str | None = None
    adapted_modules: list[str] | None = None
    seed: int = 0
    progress: bool = True


@dataclass
class RepairResult:
    model: Any
    tokenizer: Any
    report: dict
    files: dict[str, Callable[[Path], Any]] = field(default_factory=dict)
