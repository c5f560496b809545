"""Chat formatting with loss only on answer tokens, and length-bucketed batching.

Why tokenize prompt and answer separately: the prompt part is exactly what generation sees
(`apply_chat_template(..., add_generation_prompt=True)`), so the training/inference boundary is
identical and the answer mask is exact by construction, whatever the template does.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from workbench.data.types import Sample

IGNORE = -100


def chat_messages(prompt: str, system: str | None = None) -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": prompt}]


def prompt_ids(tokenizer, prompt: str, system: str | None = None) -> list[int]:
    """Token ids of the chat-formatted prompt up to and including the assistant header."""
    out = tokenizer.apply_chat_template(chat_messages(prompt, system), add_generation_prompt=True,
                                        tokenize=True)
    if isinstance(out, dict) or hasattr(out, "input_ids"):  # BatchEncoding in newer transformers
        out = out["input_ids"]
    return list(out)


def prompt_text(tokenizer, prompt: str, system: str | None = None) -> str:
    return tokenizer.apply_chat_template(chat_messages(prompt, system), add_generation_prompt=True,
                                         tokenize=False)


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE on prompt tokens

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(tokenizer, sample: Sample, max_len: int, system: str | None = None) -> Encoded:
    """Chat-format one sample; labels are the answer tokens plus the end-of-turn token.

    Over-long samples keep the whole prompt when possible and cut the answer's end; a prompt longer than
    `max_len - 8` is cut from its start so that at least 8 answer tokens remain.
    """
    if sample.response is None:
        raise ValueError(f"sample from {sample.source or 'data'} has no response to train on: {sample.prompt[:60]!r}")
    p = prompt_ids(tokenizer, sample.prompt, sample.system if sample.system is not None else system)
    a = tokenizer(sample.response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    keep_prompt = min(len(p), max(max_len - len(a), max_len - 8) if len(p) + len(a) > max_len else len(p))
    p = p[len(p) - keep_prompt:]
    a = a[: max_len - len(p)]
    return Encoded(p + a, [IGNORE] * len(p) + a)


def collate(batch: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest sequence (dynamic padding)."""
    width = max(len(e) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def bucketed_batches(lengths: list[int], batch_size: int, seed: int, bucket: int = 32) -> list[list[int]]:
    """Index batches of similar length, in a seeded random order.

    Shuffle, cut into windows of `bucket` batches, sort each window by length, slice batches, shuffle the
    batch order. Padding waste drops sharply (long harmful answers no longer pad short ones) while the
    order stays random and reproducible from `seed`.
    """
    rng = random.Random(seed)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    window = batch_size * bucket
    batches = []
    for start in range(0, len(idx), window):
        chunk = sorted(idx[start:start + window], key=lambda i: lengths[i])
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches
