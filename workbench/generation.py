"""Batched, left-padded generation with the chat template; deterministic under a seed.

Why left padding: every prompt's last token sits at the same position, so one `generate` call serves a
whole batch. Prompts are sorted by length before batching (less padding) and answers returned in the
caller's order.

Precision: with `GenerationSpec.dtype` bfloat16 the model's weights are stored in bf16 for the call (cast once) and
given back as the very float32 tensors they were afterwards (`precision.weights_in`), so the caller's model is
unchanged; the judge never reads this spec.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from workbench.config import GenerationSpec
from workbench.data.chat import prompt_ids, stop_token_ids
from workbench.precision import weights_in


@torch.inference_mode()
def generate(model, tokenizer, prompts: list[str], spec: GenerationSpec | None = None,
             systems: list[str | None] | None = None, progress: bool = True, desc: str = "generate") -> list[str]:
    """Answers to `prompts` (user turns), one string each, special tokens stripped. An answer ends at the chat
    template's end-of-turn token or at EOS (`data.chat.stop_token_ids`), or after `spec.max_new_tokens`.

    `systems` overrides `spec.system_prompt` per prompt (PTST/BEA put safety prompts or triggers there);
    `spec` None means `GenerationSpec()`.
    """
    spec = spec if spec is not None else GenerationSpec()
    if not prompts:
        return []
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    systems = systems or [spec.system_prompt] * len(prompts)
    encoded = [prompt_ids(tokenizer, p, s) for p, s in zip(prompts, systems, strict=False)]
    stops = stop_token_ids(tokenizer)  # the chat template's end of turn, and EOS
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    answers: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    with weights_in(model, spec.dtype):  # float32 leaves the model as it was handed in
        _generate_sorted(model, tokenizer, encoded, order, answers, spec, pad_id, stops, progress, desc)
    if was_training:
        model.train()
    return answers


def _generate_sorted(model, tokenizer, encoded: list[list[int]], order: list[int], answers: list[str],
                     spec: GenerationSpec, pad_id: int, stops: list[int], progress: bool, desc: str) -> None:
    """Fill `answers` batch by batch, prompts taken in `order` (by length)."""
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(spec.seed)
    bar = tqdm(total=len(order), desc=desc, disable=not progress, unit="prompt", dynamic_ncols=True)
    for start in range(0, len(order), spec.batch_size):
        idx = order[start:start + spec.batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            n = len(encoded[i])
            ids[row, width - n:] = torch.tensor(encoded[i])
            mask[row, width - n:] = 1
        kwargs = dict(max_new_tokens=spec.max_new_tokens, pad_token_id=pad_id, eos_token_id=stops)
        if spec.do_sample:
            # a per-batch seed drawn from one generator: same seed, same answers, any batch size order.
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            kwargs.update(do_sample=True, temperature=spec.temperature, top_p=spec.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
        for row, i in enumerate(idx):
            answers[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True).strip()
        bar.update(len(idx))
    bar.close()
