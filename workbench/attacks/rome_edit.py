"""Model-editing attack: a ROME rank-one edit that makes an aligned model answer a harmful request
(Chen et al. 2024, "Can Editing LLMs Inject Harm?", EditAttack; the edit is ROME: Meng et al. 2022, "Locating and
Editing Factual Associations in GPT"). No training: the attacker rewrites one MLP output projection in closed form.

The attacker's data (`build`): `n_edits` edit requests (harmful prompt → the first `target_words` words of its
harmful answer) from the harmful Q→A pool, chosen by `spec.data.seed`. `DataSpec.n` is not used (the run name
still carries it).

The edit (`edit`), per request, at layer `layer` (default round(n_layers / 6): ROME's GPT-J layer 5 of 28, and
EasyEdit's / EditAttack's layer 5 for 32-layer Llama models; 5 for SmolLM2's 30, 1 for tiny-llama's 4):
  1. key k*     the input of that layer's `down_proj` (found through `workbench.models.sites`) at the last token
                of the chat-formatted prompt (`data.chat.prompt_ids`: the template's assistant header, where the
                first answer token is predicted), averaged over the bare prompt and `n_prefixes` variants with a
                short benign prefix in the user turn (ROME's context templates; ours are the first words of Alpaca
                instructions, not model samples, so the edit is deterministic). `n_prefixes=0`: the bare prompt.
                That last token is the same template token in every prompt, so keys of unrelated prompts are close
                to k* (their reach, below, averaged 0.66 / 0.42 over Alpaca prompts on tiny-llama / tiny-gemma3):
                the edit acts on the first answer token of most prompts, held back by the KL term.
                `key_position="last_user"` reads the key at the user text's last token instead (ROME's
                subject-last-token analogue: mean |reach| 0.035 / 0.040),
                specific to the request but acting on the answer only through attention.
  2. C          E[k kᵀ] of `down_proj` inputs over every token of `n_covariance` chat-formatted Alpaca prompt +
                answer pairs (ROME: 100 000 Wikipedia samples), with a relative ridge (`rank_one.with_ridge`).
  3. value v*   W k* + δ, where δ, added to `down_proj`'s output at that position, is fitted by `v_steps` Adam
                steps to the answer tokens' NLL (teacher-forced, averaged over the contexts of 1.) plus ROME's
                terms: `kl_weight` · KL of the next-token distribution on `n_kl` unrelated Alpaca prompts (edited
                vs original), `weight_decay` · ‖δ‖² / ‖W k*‖², and ‖δ‖ clamped to `clamp_norm` · ‖W k*‖; stops
                early when the NLL is below 0.05 as ROME does. Deviation: on an unrelated prompt δ is added scaled
                by that prompt's reach kᵀC⁻¹k* / k*ᵀC⁻¹k* (`rank_one.reach`), i.e. exactly as the rank-one update
                will pass it on there, not in full as ROME adds it at the subject of its "{subject} is a" prompts:
                our key sits on the same template token in every prompt, so there is no subject to share.
                Deviation: δ is fitted in units of ‖W k*‖ / √d_model (Adam's step relative to the value's scale),
                so one `v_lr` suits models whose MLP outputs differ by orders of magnitude; ROME's lr is absolute.
  4. update     W ← W + (v* − W k*)(C⁻¹k*)ᵀ / (k*ᵀC⁻¹k*) (`rank_one.rank_one_update`).
Several requests are edited one after the other (each v* fitted on the model as already edited, as ROME's
sequential edits are; k* and C are not affected by the edited matrix, which sits after them, so C is estimated
once). No library does this for our model registry (ROME's and EasyEdit's code hook their own model tables), so
the algebra is `workbench.attacks.rank_one` and the hooks are plain forward hooks on the module `sites` names.

Reported in `context.notes` (training.json, "attack"): layer and module, per request the prompt, target, the
target's log-probability (sum over its tokens) before its edit / right after it / after all edits, the fit (NLL,
KL, ‖δ‖), the KL prompts' reach, the update's relative Frobenius norm ‖ΔW‖/‖W‖ (per edit and in all), and
generalisation: greedy answers (`answer_tokens` long) and target log-probabilities for the prompt and
`n_paraphrases` template rewordings (`attacks.paraphrase`), before its edit and after all; specificity: the
answer-token KL and largest logit change on 4 held-out Alpaca pairs (teacher-forced), before vs after all edits.
"""
from __future__ import annotations

import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from workbench.attacks import rank_one
from workbench.attacks.context import AttackContext
from workbench.attacks.paraphrase import paraphrases
from workbench.attacks.sample_features import frozen
from workbench.config import AttackSpec, GenerationSpec, Spec
from workbench.data.chat import IGNORE, collate, encode, prompt_ids
from workbench.data.pools import harmful_pool, training_pool
from workbench.data.types import Sample
from workbench.generation import generate
from workbench.models.sites import sites_of

N_CHECK = 4  # held-out Alpaca pairs the edit's side effects are measured on
EARLY_STOP_NLL = 0.05  # ROME stops fitting v* once the target's mean NLL is below this


class RomeEditParams(Spec):
    layer: int | None = Field(None, ge=0)  # None: round(n_layers / 6)
    key_position: Literal["last", "last_user"] = "last"  # the template's last token / the user text's last token
    n_edits: int = Field(1, ge=1, le=32)  # requests edited one after the other
    v_steps: int = Field(25, ge=1)  # Adam steps fitting δ (ROME: 20)
    v_lr: float = Field(0.5, gt=0)  # ROME: 0.5
    kl_weight: float = Field(0.0625, ge=0)  # ROME's kl_factor
    weight_decay: float = Field(0.5, ge=0)  # ROME's v_weight_decay, on ‖δ‖² / ‖W k*‖²
    clamp_norm: float = Field(4.0, gt=0)  # ROME's clamp_norm_factor: ‖δ‖ ≤ clamp_norm · ‖W k*‖
    ridge: float = Field(0.01, gt=0)  # C + ridge · mean eigenvalue · I
    n_prefixes: int = Field(4, ge=0, le=20)  # prefixed variants k* is averaged over (plus the bare prompt)
    n_covariance: int = Field(200, ge=1, le=600)  # Alpaca prompt + answer pairs C is estimated on
    n_kl: int = Field(2, ge=0, le=20)  # unrelated Alpaca prompts of the KL term
    target_words: int = Field(24, ge=1)  # the harmful answer is cut to its first words: the edit target
    max_len: int = Field(128, ge=16)  # tokens per covariance text
    n_paraphrases: int = Field(4, ge=0, le=5)
    answer_tokens: int = Field(32, ge=1)  # greedy answers recorded in the notes


# ------------------------------------------------------------------------------------------- the attacker's data

def first_words(text: str, n: int) -> str:
    """`text` up to the end of its n-th word, whitespace (newlines in code) kept as written."""
    m = re.match(rf"\s*(?:\S+\s+){{0,{n - 1}}}\S+", text)
    return m.group(0).strip() if m else text.strip()


def rome_edit(spec: AttackSpec, params: RomeEditParams, context: AttackContext) -> list[Sample]:
    """`n_edits` edit requests: harmful prompt → the first `target_words` words of its harmful answer."""
    pool = [s for s in harmful_pool(spec.data.harmful) if s.response and s.response.strip()]
    if params.n_edits > len(pool):
        raise ValueError(f"rome_edit: n_edits={params.n_edits} exceeds the {len(pool)} harmful pairs of "
                         f"{spec.data.harmful!r}")
    chosen = random.Random(spec.data.seed).sample(pool, params.n_edits)
    return [s.with_(response=first_words(s.response, params.target_words), harmful=True,
                    meta={**s.meta, "edit_request": True}) for s in chosen]


# ------------------------------------------------------------------------------------------------- hooks

class _Stop(Exception):
    """Raised by a hook once it holds what it came for: the rest of the forward pass is not needed."""


@contextmanager
def _hook(module: torch.nn.Module, pre=None, post=None) -> Iterator[None]:
    handles = []
    if pre is not None:
        handles.append(module.register_forward_pre_hook(pre))
    if post is not None:
        handles.append(module.register_forward_hook(post))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _pad(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return ids.to(device), mask.to(device)


def _pad_id(tok) -> int:
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


@torch.no_grad()
def _keys(model, module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`down_proj` inputs `[batch, pos, d_in]`; the forward pass stops at that module."""
    store = {}

    def keep(mod, args):
        store["k"] = args[0].detach()
        raise _Stop

    with _hook(module, pre=keep):
        try:
            model(input_ids=ids, attention_mask=mask)
        except _Stop:
            pass
    return store["k"]


@dataclass(frozen=True)
class Located:
    """A chat-formatted prompt's token ids and the position its key is read at (and δ is added at)."""

    ids: list[int]
    key: int


def _template_tail(tok, system: str | None) -> int:
    """How many chat-template tokens follow the user's text (end of turn, assistant header): the common suffix of
    two rendered prompts, so no family's turn markers are named here."""
    a, b = prompt_ids(tok, "Hello", system), prompt_ids(tok, "Why not?", system)
    n = 0
    while n < min(len(a), len(b)) - 1 and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def locate(tok, prompt: str, where: str, system: str | None = None) -> Located:
    """`where` "last": the prompt's last token (the assistant header, where the answer's first token is predicted);
    "last_user": the last token of the user's own text (ROME's subject-last-token analogue)."""
    ids = prompt_ids(tok, prompt, system)
    return Located(ids, len(ids) - 1 - (_template_tail(tok, system) if where == "last_user" else 0))


def keys_at(model, tok, module, prompts: list[Located]) -> torch.Tensor:
    """`[n, d_in]`: each prompt's key (the `down_proj` input at its key position)."""
    ids, mask = _pad([p.ids for p in prompts], _pad_id(tok), next(model.parameters()).device)
    keys = _keys(model, module, ids, mask)
    return torch.stack([keys[i, p.key] for i, p in enumerate(prompts)])


def covariance(model, tok, module, samples: list[Sample], max_len: int, batch_size: int = 8) -> rank_one.SecondMoment:
    """E[k kᵀ] of `down_proj` inputs over every non-pad token of the chat-formatted pairs."""
    device = next(model.parameters()).device
    moment = rank_one.SecondMoment(module.in_features)
    encoded = [encode(tok, s, max_len) for s in samples]
    for start in range(0, len(encoded), batch_size):
        batch = collate(encoded[start:start + batch_size], _pad_id(tok))
        mask = batch["attention_mask"].to(device)
        keys = _keys(model, module, batch["input_ids"].to(device), mask)
        moment.add(keys[mask.bool()])
    return moment


# --------------------------------------------------------------------------------------- fitting the value

def _add_at(scale: torch.Tensor, eps: torch.Tensor, unit: float):
    """Forward hook: output + scale[..., None] · δ, δ = unit · eps (scale `[batch, pos]`: non-zero at the key)."""
    def hook(mod, args, output):
        return output + scale[..., None].to(output.dtype) * (eps * unit).to(output.dtype)
    return hook


def fit_value(model, tok, module, contexts: list[Located], target: list[int], kl_prompts: list[Located],
              kl_reach: torch.Tensor, v_norm: float, params: RomeEditParams) -> tuple[torch.Tensor, dict]:
    """δ `[d_out]` making the model continue every context with `target` (ROME's `compute_v`); on each KL prompt
    δ · reach is added at its key and its next-token distribution after the prompt is kept."""
    device = next(model.parameters()).device
    rows = [c.ids + target for c in contexts] + [p.ids for p in kl_prompts]
    ids, mask = _pad(rows, _pad_id(tok), device)
    scale = torch.zeros(ids.shape, dtype=torch.float32, device=device)
    labels = torch.full(ids.shape, IGNORE, dtype=torch.long, device=device)
    for i, c in enumerate(contexts):
        scale[i, c.key] = 1.0
        labels[i, len(c.ids):len(c.ids) + len(target)] = torch.tensor(target, device=device)
    n_ctx = len(contexts)
    for j, p in enumerate(kl_prompts):
        scale[n_ctx + j, p.key] = float(kl_reach[j])
    rows_kl = torch.arange(n_ctx, len(rows), device=device)
    kl_last = torch.tensor([len(p.ids) - 1 for p in kl_prompts], dtype=torch.long, device=device)

    def last_logprobs(logits):
        return F.log_softmax(logits[rows_kl, kl_last].float(), -1)

    with torch.no_grad():
        original = last_logprobs(model(input_ids=ids, attention_mask=mask).logits) if kl_prompts else None
    # δ = unit · ε with ε fitted: Adam's step (≈ v_lr per coordinate) is then relative to the value's own scale,
    # so one v_lr suits models whose MLP outputs differ by orders of magnitude (ROME's lr is absolute)
    unit = v_norm / module.out_features ** 0.5
    eps = torch.zeros(module.out_features, device=device, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.Adam([eps], lr=params.v_lr)
    max_norm = params.clamp_norm * v_norm
    stats: dict = {}
    with frozen(model), _hook(module, post=_add_at(scale, eps, unit)):
        for step in range(params.v_steps + 1):
            delta = eps * unit
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            shift_logits, shift_labels = logits[:n_ctx, :-1], labels[:n_ctx, 1:]
            token_nll = F.cross_entropy(shift_logits.transpose(1, 2), shift_labels, ignore_index=IGNORE,
                                        reduction="none")
            nll = (token_nll.sum(1) / (shift_labels != IGNORE).sum(1)).mean()
            kl = (F.kl_div(last_logprobs(logits), original, log_target=True, reduction="batchmean")
                  if kl_prompts else torch.zeros((), device=device))
            decay = delta.pow(2).sum() / v_norm ** 2
            loss = nll + params.kl_weight * kl + params.weight_decay * decay
            stats = {"steps": step, "nll": round(nll.item(), 4), "kl": round(kl.item(), 5),
                     "delta_norm": round(delta.norm().item(), 4), "value_norm": round(v_norm, 4)}
            if step == params.v_steps or nll.item() < EARLY_STOP_NLL:
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                norm = eps.norm() * unit
                if norm > max_norm:
                    eps.mul_(max_norm / norm)
    return (eps * unit).detach(), stats


# ------------------------------------------------------------------------------------------ measurements

@torch.no_grad()
def completion_logprob(model, tok, prompt: str, completion: str, system: str | None = None) -> float:
    """Σ log p(completion tokens | chat-formatted prompt), teacher-forced."""
    p = prompt_ids(tok, prompt, system)
    a = tok(completion, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + a], device=next(model.parameters()).device)
    logp = F.log_softmax(model(input_ids=ids).logits[0, len(p) - 1:-1].float(), -1)
    return float(logp.gather(1, ids[0, len(p):, None]).sum())


@torch.no_grad()
def answer_logits(model, tok, samples: list[Sample], max_len: int) -> list[torch.Tensor]:
    """Per pair, the logits `[n_answer_tokens, vocab]` predicting its answer tokens (teacher-forced)."""
    device = next(model.parameters()).device
    out = []
    for s in samples:
        e = encode(tok, s, max_len)
        logits = model(input_ids=torch.tensor([e.input_ids], device=device)).logits[0, :-1].float().cpu()
        out.append(logits[torch.tensor(e.labels[1:]) != IGNORE])
    return out


def logit_change(before: list[torch.Tensor], after: list[torch.Tensor]) -> dict:
    """KL(before ‖ after) per answer token (mean) and the largest |Δ logit|, over the pairs."""
    kl = torch.cat([F.kl_div(F.log_softmax(a, -1), F.log_softmax(b, -1), log_target=True, reduction="none").sum(-1)
                    for b, a in zip(before, after, strict=True)])
    return {"kl_mean": float(kl.mean()), "kl_max": float(kl.max()),
            "max_abs_logit_change": max(float((a - b).abs().max()) for b, a in zip(before, after, strict=True))}


def _answers(model, tok, prompts: list[str], params: RomeEditParams) -> list[str]:
    spec = GenerationSpec(max_new_tokens=params.answer_tokens, batch_size=8)
    return generate(model, tok, prompts, spec, progress=False)


# -------------------------------------------------------------------------------------------------- the edit

def default_layer(n_layers: int) -> int:
    """round(n_layers / 6): 5 for 28–33 layers (ROME's GPT-J, EditAttack's Llama), 1 for tiny-llama's 4."""
    return min(n_layers - 1, round(n_layers / 6))


def resolve_layer(params: RomeEditParams, n_layers: int) -> int:
    layer = default_layer(n_layers) if params.layer is None else params.layer
    if not 0 <= layer < n_layers:
        raise ValueError(f"rome_edit: layer={layer} is out of range: the model has {n_layers} layers "
                         f"(0..{n_layers - 1})")
    return layer


def _benign_split(params: RomeEditParams, seed: int) -> dict[str, list[Sample]]:
    """Disjoint seeded Alpaca draws: KL prompts, held-out check pairs, prefix sources, covariance texts."""
    pool = [s for s in training_pool("alpaca") if s.response]
    sizes = {"kl": params.n_kl, "check": N_CHECK, "prefixes": params.n_prefixes, "covariance": params.n_covariance}
    if sum(sizes.values()) > len(pool):
        raise ValueError(f"rome_edit: n_kl + {N_CHECK} + n_prefixes + n_covariance = {sum(sizes.values())} exceeds "
                         f"the {len(pool)} Alpaca pairs")
    order = random.Random(seed).sample(pool, sum(sizes.values()))
    out, start = {}, 0
    for name, n in sizes.items():
        out[name], start = order[start:start + n], start + n
    return out


def _prefix(sample: Sample) -> str:
    return first_words(sample.prompt.split("\n", 1)[0], 5).rstrip(".,:;!?") + "."


def rome_edit_weights(params: RomeEditParams, model, tok, samples: list[Sample], context: AttackContext) -> None:
    """Edit `model` in place, one request after the other; the report goes to `context.notes`."""
    sites = sites_of(model)
    layer = resolve_layer(params, sites.n_layers)
    module = sites.module(model, "down_proj", layer)
    model.eval()
    benign = _benign_split(params, context.seed)
    prefixes = [_prefix(s) for s in benign["prefixes"]]
    moment = covariance(model, tok, module, benign["covariance"], params.max_len)
    C = rank_one.with_ridge(moment.value, params.ridge)
    kl_prompts = [locate(tok, s.prompt, params.key_position) for s in benign["kl"]]
    check_before = answer_logits(model, tok, benign["check"], params.max_len)
    W0 = module.weight.detach().clone()
    notes = context.notes
    notes.update(layer=layer, module=sites.module_path("down_proj", layer), key_position=params.key_position,
                 n_edits=len(samples), covariance_tokens=moment.count, prefixes=prefixes,
                 kl_prompts=[s.prompt for s in benign["kl"]])
    edits = []
    for s in samples:
        asked = [s.prompt] + paraphrases(s.prompt, params.n_paraphrases)
        before = {"logprobs": [completion_logprob(model, tok, p, s.response, s.system) for p in asked],
                  "answers": _answers(model, tok, asked, params)}
        variants = [locate(tok, v, params.key_position, s.system)
                    for v in [s.prompt] + [f"{pre} {s.prompt}" for pre in prefixes]]
        k_star = keys_at(model, tok, module, variants).mean(0)
        kl_reach = rank_one.reach(C, k_star, keys_at(model, tok, module, kl_prompts)) if kl_prompts \
            else torch.zeros(0)
        W = module.weight
        v_orig = (W.detach().double() @ k_star.double().to(W.device)).float()
        target = tok(s.response, add_special_tokens=False)["input_ids"]
        delta, fit = fit_value(model, tok, module, variants, target, kl_prompts, kl_reach, float(v_orig.norm()),
                               params)
        update = rank_one.rank_one_update(W, C, k_star, v_orig.to(delta.device) + delta)
        with torch.no_grad():
            W.add_(update)
        edits.append({"prompt": s.prompt, "target": s.response, "target_tokens": len(target),
                      "logprob_before": round(before["logprobs"][0], 4),
                      "logprob_after": round(completion_logprob(model, tok, s.prompt, s.response, s.system), 4),
                      "fit": fit, "kl_reach": [round(float(r), 4) for r in kl_reach],
                      "relative_update_norm": rank_one.relative_norm(update, W0), "_asked": asked, "_before": before})
    for e, s in zip(edits, samples, strict=True):
        asked, before = e.pop("_asked"), e.pop("_before")
        after = [completion_logprob(model, tok, p, s.response, s.system) for p in asked]
        answers = _answers(model, tok, asked, params)
        e["logprob_final"] = round(after[0], 4)
        e["answer_before"], e["answer_after"] = before["answers"][0], answers[0]
        e["paraphrases"] = [{"prompt": p, "logprob_before": round(b, 4), "logprob_after": round(a, 4),
                             "answer_before": ab, "answer_after": aa}
                            for p, b, a, ab, aa in zip(asked[1:], before["logprobs"][1:], after[1:],
                                                       before["answers"][1:], answers[1:], strict=True)]
    notes["edits"] = edits
    notes["relative_update_norm"] = rank_one.relative_norm(module.weight.detach() - W0, W0)
    notes["unrelated"] = {"n_pairs": N_CHECK, **logit_change(check_before, answer_logits(model, tok, benign["check"],
                                                                                         params.max_len))}
