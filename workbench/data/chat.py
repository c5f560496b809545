"""Chat formatting with loss only on answer tokens, and length-bucketed batching.

Why tokenize prompt and answer separately: the prompt part is exactly what generation sees
(`apply_chat_template(..., add_generation_prompt=True)`), so the training/inference boundary is
identical and the answer mask is exact by construction, whatever the template does.

Which token closes an answer is read from the same template (`end_of_turn_id`): the first token it writes after
an assistant message (ChatML `<|im_end|>`, Gemma `<end_of_turn>`). Training labels end with it, and generation
stops at it or at EOS (`stop_token_ids`), so no code here or elsewhere names a model family's turn markers
(their one home is `workbench/models/chat_formats.py`, for the builders that make tokenizers).
"""
from __future__ import annotations

import random
import weakref
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


_PROBE_PROMPT, _PROBE_ANSWER = "Hello", "Hi"
# tokenizer -> (the chat template read, its end-of-turn id). `encode` asks once per sample, and rendering the template
# twice costs about as much as encoding a short sample; weak keys free a dropped tokenizer, and a changed template
# (a builder giving a tokenizer its format) is read again.
_END_OF_TURN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def end_of_turn_id(tokenizer) -> int:
    """The token that closes an assistant answer in the tokenizer's chat template.

    Rendered, not looked up: a one-turn chat with answer "Hi" must read as the generation prompt, then "Hi",
    then the template's closing text; the first token of that text is the end of turn when it is a special
    (added) token, as `<|im_end|>` and `<end_of_turn>` are. A template that closes an answer with nothing or
    with plain text (a newline) gives EOS. ValueError for a template that does not put the answer right after
    the generation prompt, where "loss only on answers" could not be exact. Read once per tokenizer and template.
    """
    cached = _END_OF_TURN.get(tokenizer)
    if cached is not None and cached[0] == tokenizer.chat_template:
        return cached[1]
    end = _render_end_of_turn(tokenizer)
    _END_OF_TURN[tokenizer] = (tokenizer.chat_template, end)
    return end


def _render_end_of_turn(tokenizer) -> int:
    prompt = prompt_text(tokenizer, _PROBE_PROMPT)
    full = tokenizer.apply_chat_template(
        chat_messages(_PROBE_PROMPT) + [{"role": "assistant", "content": _PROBE_ANSWER}], tokenize=False)
    if not full.startswith(prompt + _PROBE_ANSWER):
        raise ValueError("the chat template does not write an assistant answer right after its generation prompt "
                         f"(prompt {prompt!r}, whole chat {full!r}); training on answers needs it to")
    closing = tokenizer(full[len(prompt + _PROBE_ANSWER):], add_special_tokens=False)["input_ids"]
    added = getattr(tokenizer, "added_tokens_decoder", {})
    if closing and (closing[0] in tokenizer.all_special_ids or closing[0] in added):
        return closing[0]
    return tokenizer.eos_token_id


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts BOS before plain text (Gemma's does; SmolLM2's does not, its chat template starts
    every turn with `<|im_start|>` instead)."""
    bos = tokenizer.bos_token_id
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos] != plain[:1]


def stop_token_ids(tokenizer) -> list[int]:
    """Token ids generation stops at: the end of turn (`end_of_turn_id`), then EOS when it differs."""
    return list(dict.fromkeys(i for i in (end_of_turn_id(tokenizer), tokenizer.eos_token_id) if i is not None))


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE on prompt tokens

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(tokenizer, sample: Sample, max_len: int, system: str | None = None) -> Encoded:
    """Chat-format one sample; labels are the answer tokens plus the end-of-turn token (`end_of_turn_id`).

    Over-long samples keep the whole prompt when possible and cut the answer's end; a prompt longer than
    `max_len - 8` is cut from its start so that at least 8 answer tokens remain. A tokenizer that puts BOS before
    any text (Gemma) keeps it as the first token of a cut prompt too: the model has never seen a sequence without.
    """
    if sample.response is None:
        raise ValueError(f"sample from {sample.source or 'data'} has no response to train on: {sample.prompt[:60]!r}")
    p = prompt_ids(tokenizer, sample.prompt, sample.system if sample.system is not None else system)
    a = tokenizer(sample.response, add_special_tokens=False)["input_ids"] + [end_of_turn_id(tokenizer)]
    keep_prompt = min(len(p), max(max_len - len(a), max_len - 8) if len(p) + len(a) > max_len else len(p))
    if keep_prompt < len(p) and adds_bos(tokenizer) and p[0] == tokenizer.bos_token_id:
        p = p[:1] + p[len(p) - keep_prompt + 1:]
    else:
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
