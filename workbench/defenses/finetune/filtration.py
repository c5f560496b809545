"""Filtration: the provider drops user samples that look harmful before fine-tuning on the rest.

Two detectors, one registry entry each:

  filtration  the moderation judge (`workbench.evaluation.judge`, a classifier over sentence embeddings of the
              prompt and the answer; the survey's "moderation model" filter, e.g. BeaverTails' moderation as used
              by Huang et al.): drop sample i ⇔ P_judge(harmful | prompt_i, response_i) ≥ `threshold`.
  saft        SAFT (Choi, Du, Zhang & Li, "Safety-Aware Fine-Tuning of Large Language Models", arXiv:2410.10014):
              no labels, no classifier — harmful samples dominate the top singular direction of the centred
              embeddings of the user data. With z_i the embedding of sample i (`[n, d]`),
                  Z̄ = Z − mean_i z_i,   v_1 = top right singular vector of Z̄,   s_i = ⟨z_i − z̄, v_1⟩²
              and the round(`drop_fraction` · n) samples with the largest s_i are dropped.
              Embeddings (`features`): "model" (default, as in SAFT: the LLM's own representation) = the aligned
              model's hidden state at `layer` (default L // 2), mean over the non-padding tokens of the
              chat-formatted prompt + response; or "minilm" / "hashing" sentence embeddings of prompt + response
              (`workbench.evaluation.embeddings`). Pooling and layer are our choice; SAFT picks a layer per model
              and also fits the threshold, where we drop a fixed fraction.

Both write the filter's quality against the mix's ground truth (`Sample.harmful`, known for every generated
mix) into the run's training notes under "filtration": counts, precision = |dropped ∩ harmful| / |dropped|
and recall = |dropped ∩ harmful| / |harmful| (None when undefined).

Defaults: threshold 0.5 (the judge's own decision point, chosen by cross-validation on its training rows; its
held-out error rates are in `workbench judge report` and docs/quickstart.md), judge embedder "minilm" (trained
and cached on first use; "hashing" is the fast stand-in for tests); drop_fraction 0.1 (the default harmful ratio
p of the attack mix).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from workbench.config import Spec
from workbench.data.chat import collate, encode
from workbench.data.types import Sample
from workbench.defenses.context import TrainingContext
from workbench.evaluation.embeddings import get_embedder
from workbench.evaluation.judge import load_judge
from workbench.models import load_model


class FiltrationParams(Spec):
    threshold: float = Field(0.5, ge=0, le=1)  # drop when the judge's P(harmful) ≥ threshold
    embedder: Literal["minilm", "hashing"] = "minilm"  # the judge's sentence embedder


class SAFTParams(Spec):
    drop_fraction: float = Field(0.1, ge=0, lt=1)  # share of the user samples dropped (top spectral scores)
    features: Literal["model", "minilm", "hashing"] = "model"
    layer: int | None = None  # hidden_states index for features="model"; None = n_layers // 2
    batch_size: int = Field(8, ge=1)


# ----------------------------------------------------------------------------------------- reporting

def filtration_report(samples: list[Sample], dropped: list[bool], method: str, **extra) -> dict:
    """Counts and precision / recall of `dropped` against `Sample.harmful`."""
    harmful = [bool(s.harmful) for s in samples]
    tp = sum(d and h for d, h in zip(dropped, harmful, strict=False))
    n_dropped, n_harmful = sum(dropped), sum(harmful)
    return {"method": method, "n_in": len(samples), "n_dropped": n_dropped, "n_kept": len(samples) - n_dropped,
            "n_harmful_in": n_harmful, "n_harmful_dropped": tp, "n_benign_dropped": n_dropped - tp,
            "n_harmful_kept": n_harmful - tp,
            "precision": tp / n_dropped if n_dropped else None,
            "recall": tp / n_harmful if n_harmful else None, **extra}


def _apply(samples: list[Sample], dropped: list[bool], context: TrainingContext, report: dict) -> list[Sample]:
    kept = [s for s, d in zip(samples, dropped, strict=False) if not d]
    context.notes["filtration"] = report
    if not kept:
        raise ValueError(f"{report['method']} dropped all {len(samples)} user samples: nothing left to fine-tune "
                         "on; raise the threshold / lower drop_fraction")
    return kept


# ----------------------------------------------------------------------------------------- the judge

def _load_judge(embedder: str):
    """The cached moderation judge (kept as a module function so tests can substitute a small one)."""
    return load_judge(embedder)


def judge_flags(judge, samples: list[Sample], threshold: float) -> tuple[list[bool], np.ndarray]:
    scores = np.asarray(judge.score([s.prompt for s in samples], [s.response or "" for s in samples]))
    return [bool(x >= threshold) for x in scores], scores


def judge_data(params: FiltrationParams, samples: list[Sample], context: TrainingContext) -> list[Sample]:
    dropped, scores = judge_flags(_load_judge(params.embedder), samples, params.threshold)
    report = filtration_report(samples, dropped, "judge", threshold=params.threshold, embedder=params.embedder,
                               mean_score=float(scores.mean()) if len(scores) else None)
    return _apply(samples, dropped, context, report)


# ----------------------------------------------------------------------------------------- SAFT

def spectral_scores(Z: np.ndarray) -> np.ndarray:
    """s_i = ⟨z_i − z̄, v_1⟩² with v_1 the top right singular vector of the centred `Z` (`[n, d]`)."""
    Zc = Z - Z.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(Zc, full_matrices=False)
    return (Zc @ vt[0]) ** 2


def top_fraction_mask(scores: np.ndarray, fraction: float) -> list[bool]:
    """True for the round(fraction · n) largest scores (ties broken by index, stable)."""
    k = round(fraction * len(scores))
    order = np.argsort(-scores, kind="stable")[:k]
    mask = np.zeros(len(scores), dtype=bool)
    mask[order] = True
    return mask.tolist()


@torch.no_grad()
def model_embeddings(model_ref: str, samples: list[Sample], layer: int | None, max_len: int,
                     system_prompt: str | None, batch_size: int = 8) -> np.ndarray:
    """`[n, d_model]`: mean over non-padding tokens of hidden_states[layer] for chat-formatted prompt + response."""

    model, tok = load_model(model_ref)
    n_layers = model.config.num_hidden_layers
    layer = n_layers // 2 if layer is None else layer
    if not 0 <= layer <= n_layers:
        raise ValueError(f"saft layer {layer} out of range: hidden_states has indices 0..{n_layers}")
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    enc = [encode(tok, s, max_len, system_prompt) for s in samples]
    out = np.zeros((len(samples), model.config.hidden_size), dtype=np.float64)
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))  # similar lengths together: less padding
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        b = collate([enc[i] for i in idx], pad)
        h = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=True,
                  use_cache=False).hidden_states[layer].double()
        m = b["attention_mask"].unsqueeze(-1).double()
        out[idx] = ((h * m).sum(1) / m.sum(1)).numpy()
    return out


def saft_embeddings(params: SAFTParams, samples: list[Sample], context: TrainingContext) -> np.ndarray:
    if params.features == "model":
        train = context.train
        return model_embeddings(str(context.model), samples, params.layer, train.max_len, train.system_prompt,
                                params.batch_size)

    return np.asarray(get_embedder(params.features).encode([f"{s.prompt}\n{s.response or ''}" for s in samples]),
                      dtype=np.float64)


def saft_data(params: SAFTParams, samples: list[Sample], context: TrainingContext) -> list[Sample]:
    scores = spectral_scores(saft_embeddings(params, samples, context))
    dropped = top_fraction_mask(scores, params.drop_fraction)
    report = filtration_report(samples, dropped, "saft", drop_fraction=params.drop_fraction,
                               features=params.features, layer=params.layer)
    return _apply(samples, dropped, context, report)


def plugins(params, context: TrainingContext) -> list:
    return []
