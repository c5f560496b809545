"""The one record type every dataset, mix and evaluation set is made of.

Why one type: registries, mixing, chat formatting, training and evaluation all pass the same
`Sample` around, so a user JSONL file and a packaged dataset are interchangeable.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Sample:
    """One prompt with an optional answer.

    prompt:   the user turn.
    response: the assistant turn (None for prompt-only sets such as AdvBench eval prompts).
    harmful:  whether the *request* is harmful (None when unknown).
    label:    task label, e.g. "positive"/"negative" for sentiment, an int answer for math,
              1/0 "objective achieved" for human-labelled judge data.
    system:   optional system prompt used when formatting with the chat template.
    source:   dataset name it came from.
    uid:      stable id (hash of source + prompt) used to keep splits disjoint by prompt.
    """

    prompt: str
    response: str | None = None
    harmful: bool | None = None
    label: Any = None
    system: str | None = None
    source: str = ""
    uid: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.uid:
            object.__setattr__(self, "uid", prompt_uid(self.prompt))

    def with_(self, **changes: Any) -> Sample:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)


def prompt_uid(prompt: str) -> str:
    """Id of a prompt, normalised for whitespace/case so near-identical prompts share a split."""
    norm = " ".join(prompt.lower().split())
    return hashlib.sha1(norm.encode("utf-8")).hexdigest()[:16]
