"""Benign data chosen to break safety: bi-directional anchoring (He, Xia & Henderson 2024, "What is in Your Safe
Data? Identifying Benign Data that Breaks Safety", COLM 2024, arXiv:2404.01099).

Method. Every candidate of a benign instruction set gets a feature from the model under attack: the gradient of
its answer loss (gradient matching) or its final hidden state (representation matching), as a unit vector f(z).
Two small anchor sets: D_harmful, harmful prompts with their harmful answers, and D_safe, the same prompts answered
with refusals. The score

    s(z) = f(z) · mean_{a ∈ D_harmful} f(a)  −  f(z) · mean_{a ∈ D_safe} f(a)

is high for data that pushes the model the way harmful answers do and away from the way refusals do; the attacker
uploads the top n (DataSpec.n). Every uploaded sample is benign (harmful=False); training on them is the attack.

Control. `benign_ft` with the same DataSpec is the random control: n samples drawn at random from the very pool
this attack ranks (`harmful_ft.benign_pool`: DataSpec.benign, the default sst2 meaning Alpaca). Compare
`--attack anchored_benign` with `--attack benign_ft` at equal n and seed.

Our defaults and deviations (the model is SmolLM2 on a laptop CPU, not Llama-2-7B-chat on a GPU):
- pool: the Alpaca demo set's train side (798 samples, eval prompts of every dataset already dropped), the only
  benign instruction set with free-form answers our packages ship (gsm_symbolic / gsm8k are math word problems,
  which the paper also selects from: `DataSpec.benign="gsm_symbolic"` ranks those, for this attack and its control
  alike). The paper ranks the whole Alpaca (52 k) and Dolly sets; `pool_size` (default 1000) caps a seeded subset.
- anchors: `n_anchors` = 10 (the paper's 10) harmful Q→A pairs drawn by seed from `DataSpec.harmful`'s train side
  (never an evaluation prompt), not hand-picked from one harm category; the safe anchors are the same prompts
  answered with `data.refusals` templates instead of the paper's own refusal answers.
- features of the first `answer_tokens` = 10 answer tokens, as the paper's released runs (max_response_length 10).
- gradient: the paper takes the full gradient of every weight, normalised. We take the weights of the linear
  sublayers LoRA trains (`TrainSpec.lora_targets`) in the last `layers` = 4 decoder layers, each sketched to
  `rank` = 8 columns by a seeded random matrix (the gradient a LoRA B matrix gets at initialisation; see
  `sample_features`), concatenated and normalised: one forward and a short backward per sample.
- representation: the paper takes the last token's final hidden state; we average the final hidden state over the
  answer tokens scored, so one trailing token does not decide the feature, and centre the features on the
  candidates' mean before normalising: hidden states share a large common component (a tiny model's mean answer
  states all have cosine > 0.9 with each other), which otherwise drowns the differences the score is made of.
  Gradients are used as they are, as in the paper.
- anchor means are means of unit vectors (as the paper averages normalised anchor gradients), not renormalised.
"""
from __future__ import annotations

import random
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from tqdm.auto import tqdm

from workbench.attacks.context import AttackContext
from workbench.attacks.harmful_ft import benign_pool
from workbench.attacks.sample_features import (
    Feature,
    GradientSketch,
    encode_answer_start,
    iter_features,
    mean_answer_state,
)
from workbench.config import AttackSpec, DataSpec, Spec
from workbench.data.pools import harmful_pool
from workbench.data.refusals import REFUSAL_SOURCE, refusal_for
from workbench.data.types import Sample
from workbench.machine import configure_threads
from workbench.models import load_model

PAPER = ("He, Xia & Henderson 2024, What is in Your Safe Data? Identifying Benign Data that Breaks Safety "
         "(bi-directional anchoring)")


class AnchoredParams(Spec):
    feature: Feature = "gradient"  # gradient matching, or the cheaper representation matching
    pool_size: int = Field(1000, ge=1)  # candidates ranked: a seeded subset of the benign pool when it is larger
    n_anchors: int = Field(10, ge=1)  # harmful anchors, and as many safe (refused) anchors
    answer_tokens: int = Field(10, ge=1)  # the features see this many answer tokens
    layers: int = Field(4, ge=1)  # gradient: the last `layers` decoder layers' LoRA-targeted sublayers
    rank: int = Field(8, ge=1)  # gradient: sketch columns per sublayer
    batch_size: int = Field(8, ge=1)  # samples per forward pass while scoring


def candidate_pool(data: DataSpec, pool_size: int) -> tuple[str, list[Sample]]:
    """(name, candidates): the benign samples with answers of the pool `benign_ft` draws from, a seeded subset of
    `pool_size` when it holds more."""
    name, pool = benign_pool(data)
    pool = [s for s in pool if s.harmful is False and s.response]
    if not pool:
        raise ValueError(f"anchored_benign: the {name!r} train side holds no benign sample with an answer to select")
    if pool_size < len(pool):
        pool = random.Random(data.seed).sample(pool, pool_size)
    return name, pool


def anchor_sets(harmful: str, n_anchors: int, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(D_harmful, D_safe): `n_anchors` harmful Q→A pairs of the `harmful` train side (no evaluation prompt), and
    the same prompts answered with a refusal template."""
    pool = harmful_pool(harmful)
    if n_anchors > len(pool):
        raise ValueError(f"anchored_benign: n_anchors={n_anchors} but {harmful!r} has {len(pool)} harmful pairs")
    chosen = random.Random(seed).sample(pool, n_anchors)
    safe = [s.with_(response=refusal_for(s.prompt), meta={**s.meta, "response_source": REFUSAL_SOURCE})
            for s in chosen]
    return chosen, safe


def make_featurizer(model, params: AnchoredParams, targets: Sequence[str], seed: int):
    """The feature function of `params.feature` for `model`: `(model, batch) -> [batch, dim]` unit vectors."""
    if params.feature == "gradient":
        return GradientSketch(model, targets, params.layers, params.rank, seed)
    return mean_answer_state


def anchored_scores(model, tokenizer, featurize, candidates: Sequence[Sample], harmful: Sequence[Sample],
                    safe: Sequence[Sample], params: AnchoredParams, max_len: int, system: str | None = None,
                    progress: bool = False) -> torch.Tensor:
    """s(z) for each candidate, `[len(candidates)]` (float64): similarity to the harmful anchors' mean feature minus
    similarity to the safe anchors' mean feature. Representation features are centred on the candidates' mean
    first (see the module docstring)."""
    samples = [*harmful, *safe, *candidates]
    encoded = encode_answer_start(tokenizer, samples, params.answer_tokens, max_len, system)
    feats: torch.Tensor | None = None
    with tqdm(total=len(samples), desc="anchored_benign: scoring", disable=not progress) as bar:
        for idx, batch_feats in iter_features(model, encoded, featurize, tokenizer.pad_token_id, params.batch_size):
            feats = torch.zeros(len(samples), batch_feats.shape[1]) if feats is None else feats
            feats[idx] = batch_feats
            bar.update(len(idx))
    n_h, n_a = len(harmful), len(harmful) + len(safe)
    if params.feature == "representation":
        feats = F.normalize(feats - feats[n_a:].mean(0), dim=1)
    direction = feats[:n_h].double().mean(0) - feats[n_h:n_a].double().mean(0)
    return feats[n_a:].double() @ direction  # f·h̄ − f·s̄ = f·(h̄ − s̄)


def _summary(values: np.ndarray) -> dict:
    return {k: round(float(f(values)), 6) for k, f in
            (("mean", np.mean), ("std", np.std), ("min", np.min), ("median", np.median), ("max", np.max))}


def anchored_benign(spec: AttackSpec, params: AnchoredParams, context: AttackContext) -> list[Sample]:
    """The n candidates of highest anchored score, best first; each carries its score in meta["anchored_score"]."""
    if not context.model:
        raise ValueError("anchored_benign ranks the benign pool by the attacked model's own gradients or hidden "
                         "states: it needs the model (AttackContext.model; `steps.attack` passes it)")
    d = spec.data
    pool_name, candidates = candidate_pool(d, params.pool_size)
    if d.n > len(candidates):
        raise ValueError(f"anchored_benign selects n={d.n} of only {len(candidates)} candidates ({pool_name}, "
                         f"pool_size={params.pool_size}); lower n or raise pool_size")
    harmful, safe = anchor_sets(d.harmful, params.n_anchors, d.seed)
    configure_threads()
    started = time.perf_counter()
    model, tokenizer = load_model(context.model)
    featurize = make_featurizer(model, params, context.train.lora_targets, d.seed)
    scores = anchored_scores(model, tokenizer, featurize, candidates, harmful, safe, params, context.train.max_len,
                             context.train.system_prompt, progress=True).numpy()
    seconds = round(time.perf_counter() - started, 2)
    chosen = sorted(range(len(candidates)), key=lambda i: (-scores[i], i))[:d.n]
    context.notes.update({
        "feature": params.feature, "pool": pool_name, "pool_size": len(candidates),
        "layers": featurize.layers if isinstance(featurize, GradientSketch) else None,
        "anchor_uids": [s.uid for s in harmful], "selection_seconds": seconds,
        "scores": {"pool": _summary(scores), "selected": _summary(scores[chosen])},
        "selected_uids": [candidates[i].uid for i in chosen],
    })
    return [candidates[i].with_(meta={**candidates[i].meta, "anchored_score": round(float(scores[i]), 6)})
            for i in chosen]
