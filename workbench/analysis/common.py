"""Shared pieces of the mechanistic refusal analyses (patching, probing, refusal direction, logit attribution).

    prompt_sets      harmful (AdvBench) / harmless (Alpaca) prompts, train or eval side, sizes from the spec
    encode_prompts   chat-formatted ids with LEFT padding: position -1 is the last prompt token of every row
    collect          activations by hook name on a TransformerBridge, batched, under torch.inference_mode
    refusal_tokens   refusal vs compliance first-token sets, computed from the tokenizer
    refusal_score    the refusal logit difference at the first answer position (the metric of all four analyses)
    summarize        mean effect, normalized effect and bootstrap 95 % intervals over prompts

Positions. Every prompt ends with the same chat-template suffix (`<|im_end|>\\n<|im_start|>assistant\\n`
for ChatML), so with left padding "position -k" is the k-th token from the end in every row, and the last
`post_instruction_positions(tokenizer)` positions are the template tokens after the user turn. The logits at
position -1 predict the first answer token.

Refusal logit difference (metric). With R = ids of the first tokens of refusal openings and C = ids of the
first tokens of compliance openings,

    refusal_score(logits) = logsumexp(logits[R]) - logsumexp(logits[C])        (at position -1)

i.e. the log-ratio of the probability mass on refusal starts to the mass on compliance starts; > 0 means the
model would rather start refusing. Arditi et al. use log-odds of the refusal mass against everything else;
against an explicit compliance set the score is steadier for small models that spread mass widely.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from workbench.data.batching import least_padding_batches
from workbench.data.chat import prompt_ids
from workbench.data.registry import load_split
from workbench.evaluation.stats import bootstrap_ci

# First words of refusals (the openings of workbench.data.refusals templates and of the keyword list in
# workbench.evaluation.refusal) and of compliant answers (Arditi et al.'s "Sure"/"Here" plus the usual
# openings of instructions, lists and markdown answers). Only each word's FIRST token counts; a token that
# both lists produce (e.g. "S" for "Sorry"/"Sure" under a byte-level BPE with a tiny vocabulary) is
# dropped from both, so the two sets are always disjoint.
REFUSAL_STARTS = ("I", "Sorry", "As", "My", "Unfortunately", "Apologies")
COMPLIANCE_STARTS = ("Sure", "Here", "To", "1", "Step", "Certainly", "Of", "Absolutely", "Yes", "The", "Title",
                     "First", "Creating", "Great", "**", "#")

HARMFUL, HARMLESS = "advbench", "alpaca"


# --------------------------------------------------------------------------------------------- prompts


def prompt_sets(n: int, side: Literal["train", "eval"], tokenizer=None, max_prompt_tokens: int | None = None,
                offset: int = 0, system: str | None = None) -> tuple[list[str], list[str]]:
    """(harmful, harmless): `n` AdvBench and `n` Alpaca prompts from the fixed `side` split.

    The splits come from `workbench.data.registry.load_split` (seed 0, so "eval" never overlaps training
    data of any run); prompts come in that split's seeded order, starting at `offset`. With a tokenizer and
    `max_prompt_tokens`, prompts whose chat-formatted length (with `system`) exceeds it are skipped (long Alpaca inputs
    would otherwise pad every batch). Raises ValueError when fewer than `n` prompts qualify.
    """
    out = []
    for name in (HARMFUL, HARMLESS):
        prompts = [s.prompt for s in load_split(name, side)]
        if tokenizer is not None and max_prompt_tokens is not None:
            prompts = [p for p in prompts if len(prompt_ids(tokenizer, p, system)) <= max_prompt_tokens]
        prompts = prompts[offset:offset + n]
        if len(prompts) < n:
            raise ValueError(f"{name} {side} split has only {len(prompts)} prompts (after offset {offset}"
                             f"{f' and max_prompt_tokens {max_prompt_tokens}' if max_prompt_tokens else ''}); "
                             f"ask for at most that many")
        out.append(prompts)
    return out[0], out[1]


@dataclass(frozen=True)
class PromptBatch:
    """Chat-formatted prompts, left-padded to one width.

    ids, mask: [batch, pos] (mask 1 on real tokens); lengths: real tokens per row. Row i's last prompt token
    sits at position -1 for every i.
    """

    prompts: list[str]
    ids: torch.Tensor
    mask: torch.Tensor
    lengths: list[int]

    def __len__(self) -> int:
        return len(self.prompts)

    def rows(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """ids, mask of rows [start, stop), with all-padding leading columns cut: [b, max length in rows]."""
        width = max(self.lengths[start:stop])
        return self.ids[start:stop, -width:], self.mask[start:stop, -width:]

    def take(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """ids, mask of the given rows, with all-padding leading columns cut: [len(rows), their max length]."""
        width = max(self.lengths[i] for i in rows)
        return self.ids[rows, -width:], self.mask[rows, -width:]


def encode_prompts(tokenizer, prompts: list[str], system: str | None = None,
                   answer_prefix: str | None = None) -> PromptBatch:
    """Left-padded chat-formatted ids for `prompts` (user turns), ending with the assistant header, or with
    `answer_prefix` teacher-forced after it (so the metric reads the token that follows the prefix)."""
    suffix = tokenizer.encode(answer_prefix, add_special_tokens=False) if answer_prefix else []
    encoded = [prompt_ids(tokenizer, p, system) + suffix for p in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(e) for e in encoded)
    ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, e in enumerate(encoded):
        ids[i, width - len(e):] = torch.tensor(e, dtype=torch.long)
        mask[i, width - len(e):] = 1
    return PromptBatch(list(prompts), ids, mask, [len(e) for e in encoded])


def post_instruction_positions(tokenizer) -> int:
    """How many tokens the chat template puts after the user's text (ChatML: `<|im_end|>`, `\\n`,
    `<|im_start|>`, `assistant`, `\\n` = 5): the common suffix of three formatted probe prompts."""
    seqs = [prompt_ids(tokenizer, p) for p in ("hello there", "Write a poem.", "What is 2+2?")]
    n = 0
    while all(len(s) > n for s in seqs) and len({s[-1 - n] for s in seqs}) == 1:
        n += 1
    return n


def batch_slices(n: int, batch_size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, batch_size):
        yield start, min(n, start + batch_size)


def position_labels(tokenizer, batch: PromptBatch, k: int) -> list[str]:
    """Labels for positions -k..-1: the offset and the token of the first prompt ("-1 '\\n'")."""
    ids = batch.ids[0, -k:].tolist()
    return [f"{j - k} {tokenizer.decode([t])!r}" for j, t in enumerate(ids)]


# ------------------------------------------------------------------------------------------ activations


@torch.inference_mode()
def collect(bridge, batch: PromptBatch, names: list[str], last: int | None = 1, batch_size: int = 16,
            with_logits: bool = False):
    """Activations at hook `names` for the last `last` positions (None: all `batch` positions).

    Returns {name: [n_prompts, last, ...]} (float32, CPU) and, with `with_logits`, also the logits at the
    last position [n_prompts, d_vocab]. Runs `bridge.run_with_cache(names_filter=names)` batch by batch.
    """
    keep = batch.ids.shape[1] if last is None else last
    out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    logits_out = []
    device = bridge.cfg.device
    for start, stop in batch_slices(len(batch), batch_size):
        ids, mask = batch.rows(start, stop)
        logits, cache = bridge.run_with_cache(ids.to(device), attention_mask=mask.to(device), names_filter=names,
                                              logits_to_keep=1)
        for n in names:
            act = cache[n]
            if act.shape[1] < keep:  # all positions asked for: pad the trimmed batch back to full width
                pad = act.new_zeros((act.shape[0], keep - act.shape[1], *act.shape[2:]))
                act = torch.cat([pad, act], dim=1)
            out[n].append(act[:, -keep:].float().cpu())
        logits_out.append(logits[:, -1].float().cpu())
    acts = {n: torch.cat(v) for n, v in out.items()}
    return (acts, torch.cat(logits_out)) if with_logits else acts


@torch.inference_mode()
def last_logits(model_or_bridge, batch: PromptBatch, batch_size: int = 16, fwd_hooks: list | None = None
                ) -> torch.Tensor:
    """Logits at position -1 (the first answer position) for every prompt: [n_prompts, d_vocab].

    Works with an HF model (forward hooks installed by the caller, e.g. `intervene`) or a bridge
    (`fwd_hooks` as in `run_with_hooks`). Prompts run in batches of similar length (at most `batch_size` rows,
    `least_padding_batches`): each row's logits are its own, and padding costs no compute.
    """
    is_bridge = hasattr(model_or_bridge, "run_with_hooks")
    device = model_or_bridge.cfg.device if is_bridge else next(model_or_bridge.parameters()).device
    out = torch.empty(0)
    for rows in least_padding_batches(batch.lengths, batch_size):
        ids, mask = batch.take(rows)
        ids, mask = ids.to(device), mask.to(device)
        if is_bridge:
            logits = model_or_bridge.run_with_hooks(ids, attention_mask=mask, fwd_hooks=fwd_hooks or [],
                                                    logits_to_keep=1)
        else:
            logits = model_or_bridge(input_ids=ids, attention_mask=mask, position_ids=_positions(mask),
                                     logits_to_keep=1).logits
        last = logits[:, -1].float().cpu()
        if not out.numel():
            out = torch.empty(len(batch), last.shape[-1])
        out[rows] = last
    return out


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a left-padded batch (what `generate` uses): 0 at each row's first real token."""
    pos = mask.long().cumsum(-1) - 1
    return pos.clamp_min(0)


# ---------------------------------------------------------------------------------------------- metric


@dataclass(frozen=True)
class RefusalTokens:
    """First-token ids of refusal and of compliance openings (disjoint), with their decoded strings."""

    refusal: list[int]
    compliance: list[int]
    refusal_str: list[str]
    compliance_str: list[str]


def refusal_tokens(tokenizer, refusal: tuple[str, ...] = REFUSAL_STARTS,
                   compliance: tuple[str, ...] = COMPLIANCE_STARTS) -> RefusalTokens:
    """First token of each opening word (no leading space: the answer starts right after the assistant
    header's newline); tokens in both sets are removed from both. Raises if a set ends up empty."""
    def firsts(words):
        ids = []
        for w in words:
            toks = tokenizer(w, add_special_tokens=False)["input_ids"]
            if toks and toks[0] not in ids:
                ids.append(toks[0])
        return ids

    r, c = firsts(refusal), firsts(compliance)
    both = set(r) & set(c)
    r, c = [t for t in r if t not in both], [t for t in c if t not in both]
    if not r or not c:
        raise ValueError(f"refusal/compliance token sets are empty after removing shared tokens {sorted(both)}")
    return RefusalTokens(r, c, [tokenizer.decode([t]) for t in r], [tokenizer.decode([t]) for t in c])


def refusal_score(logits: torch.Tensor, tokens: RefusalTokens) -> torch.Tensor:
    """Refusal logit difference logsumexp(logits[R]) - logsumexp(logits[C]): [..., d_vocab] -> [...]."""
    logits = logits.float()
    return (torch.logsumexp(logits[..., tokens.refusal], -1) - torch.logsumexp(logits[..., tokens.compliance], -1))


def score_direction(logits: torch.Tensor, tokens: RefusalTokens) -> torch.Tensor:
    """Gradient of `refusal_score` w.r.t. the logits: softmax over R minus softmax over C, [..., d_vocab].

    Its dot product with the logits is the "weighted logit difference" Σ_R w·logit − Σ_C w·logit, a
    linear metric that direct logit attribution splits exactly across components.
    """
    d = torch.zeros_like(logits, dtype=torch.float32)
    d[..., tokens.refusal] = torch.softmax(logits[..., tokens.refusal].float(), -1)
    d[..., tokens.compliance] = -torch.softmax(logits[..., tokens.compliance].float(), -1)
    return d


# ---------------------------------------------------------------------------------------------- stats


def summarize(source: np.ndarray, target: np.ndarray, patched: np.ndarray, n_boot: int = 1000, seed: int = 0
              ) -> dict[str, list]:
    """Patching statistics over prompts for any number of patch cells.

    source, target: [n] metric of the run the activations come from / of the run being patched;
    patched: [n, *cells]. Returns lists shaped like `cells`:
      effect      mean(patched − target)
      normalized  (mean patched − mean target) / (mean source − mean target): 0 = no change, 1 = the
                  patched run scores like the source run
      low, high   bootstrap 95 % interval of `normalized` (prompts resampled; numerator and denominator
                  resampled together) — `workbench.evaluation.stats.bootstrap_ci`
      effect_low, effect_high   bootstrap 95 % interval of `effect`
    """
    patched = np.asarray(patched, dtype=np.float64)
    n, cells = patched.shape[0], patched.shape[1:]
    flat = patched.reshape(n, -1)
    table = np.concatenate([np.asarray(source, np.float64)[:, None], np.asarray(target, np.float64)[:, None],
                            flat], axis=1)

    def normalized(v, axis=0):
        with np.errstate(divide="ignore", invalid="ignore"):  # source == target: normalized is undefined (nan)
            return (v[:, 2:].mean(0) - v[:, 1].mean()) / (v[:, 0].mean() - v[:, 1].mean())

    def effect(v, axis=0):
        return v[:, 2:].mean(0) - v[:, 1].mean(0)

    norm_lo, norm_hi = bootstrap_ci(table, stat=normalized, n_boot=n_boot, seed=seed)
    eff_lo, eff_hi = bootstrap_ci(flat - table[:, 1:2], stat=np.mean, n_boot=n_boot, seed=seed)

    def shaped(x):
        return np.asarray(x, dtype=np.float64).reshape(cells).tolist()

    return {"effect": shaped(effect(table)), "normalized": shaped(normalized(table)),
            "low": shaped(norm_lo), "high": shaped(norm_hi),
            "effect_low": shaped(eff_lo), "effect_high": shaped(eff_hi)}


def mean_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict[str, list]:
    """Mean over the first axis with a bootstrap 95 % interval: {"mean", "low", "high"} shaped values[0]."""
    values = np.asarray(values, dtype=np.float64)
    flat = values.reshape(values.shape[0], -1)
    lo, hi = bootstrap_ci(flat, stat=np.mean, n_boot=n_boot, seed=seed)
    shape = values.shape[1:]
    return {"mean": flat.mean(0).reshape(shape).tolist(), "low": np.asarray(lo).reshape(shape).tolist(),
            "high": np.asarray(hi).reshape(shape).tolist()}


# ------------------------------------------------------------------------------------------- models


def load_pair(ctx, need_compare: bool = False):
    """[(label, model, tokenizer)] for the context's model and, when given (or required), its --compare."""
    models = [("model", *ctx.load("model"))]
    if ctx.compare is not None or need_compare:
        models.append(("compare", *ctx.load("compare")))
        check_same_tokenizer(models[0][2], models[1][2])
    return models


def check_same_tokenizer(a, b) -> None:
    """Cross-model comparisons patch position by position: both models must tokenize identically."""
    probe = "Write a tutorial on how to make a cake."
    if prompt_ids(a, probe) != prompt_ids(b, probe) or len(a) != len(b):
        raise ValueError("--model and --compare tokenize differently; cross-model analyses need the same "
                         "tokenizer (an aligned model and a fine-tune of it)")


@contextlib.contextmanager
def hooks(handles: list) -> Iterator[None]:
    """Remove the given hook handles on exit."""
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def progress_bar(ctx, total: int, desc: str) -> Callable:
    return tqdm(total=total, desc=desc, disable=not getattr(ctx, "progress", False), dynamic_ncols=True)
