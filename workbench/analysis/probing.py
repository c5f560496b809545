"""Linear probes: at which layer does the residual stream separate harmful from harmless requests?

Method (Alain & Bengio 2016; as used for refusal by Arditi et al. 2024 and Zou et al. 2023). For every
layer L, take `blocks.{L}.hook_resid_post` at the last prompt token (position -1: the newline after the
assistant header, where the model is about to answer) for `n_train` harmful (AdvBench) and `n_train`
harmless (Alpaca) prompts of the train split, and fit a logistic-regression probe (scikit-learn,
standardized features, L2 with strength 1/C):

    cv accuracy    stratified `folds`-fold cross-validation on the train prompts (mean ± std over folds)
    held-out       a probe fitted on all train prompts, scored on `n_eval` + `n_eval` eval-split prompts

The layer is chosen by cross-validated accuracy (train side only), and its held-out accuracy is the
headline; held-out accuracy is also reported for every layer. With --compare the second model is probed on
the same prompts, drawn on the same axes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from workbench.analysis import common
from workbench.analysis.result import AnalysisResult
from workbench.config import Spec as _Spec
from workbench.models import boot_bridge
from workbench.models.sites import sites_of


class Spec(_Spec):
    n_train: int = Field(64, ge=4)  # prompts per class from the train split
    n_eval: int = Field(32, ge=2)  # prompts per class from the eval split (held out)
    folds: int = Field(5, ge=2)
    C: float = Field(1.0, gt=0)  # inverse L2 strength of the logistic regression
    hook: Literal["resid_post", "resid_pre"] = "resid_post"
    max_prompt_tokens: int = Field(96, ge=8)
    batch_size: int = Field(16, ge=1)
    system: str | None = None  # system prompt for every prompt (None: the chat template's default)


@dataclass(frozen=True)
class ProbingResult(AnalysisResult):
    """Rows follow `labels` (["model"] or ["model", "compare"]); columns are layers.

    cv_mean, cv_std, heldout: [n_models, n_layers] accuracies in [0, 1]."""

    labels: list[str]
    refs: list[str]
    n_layers: int
    n_train: int
    n_eval: int
    folds: int
    hook: str
    cv_mean: torch.Tensor
    cv_std: torch.Tensor
    heldout: torch.Tensor

    def headline(self) -> dict:
        out = {}
        for i, label in enumerate(self.labels):
            best = int(self.cv_mean[i].argmax())
            out[label] = {"best_layer_by_cv": best, "cv_accuracy": float(self.cv_mean[i, best]),
                          "heldout_accuracy_at_best_layer": float(self.heldout[i, best]),
                          "max_heldout_accuracy": float(self.heldout[i].max()),
                          "max_heldout_layer": int(self.heldout[i].argmax()),
                          "n_heldout": 2 * self.n_eval}
        return out


def _probe(C: float, seed: int):
    from sklearn.linear_model import LogisticRegression  # deferred: sklearn
    from sklearn.pipeline import make_pipeline  # deferred: sklearn
    from sklearn.preprocessing import StandardScaler  # deferred: sklearn

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000, random_state=seed))


def probe_cv(X: np.ndarray, y: np.ndarray, folds: int = 5, C: float = 1.0, seed: int = 0) -> tuple[float, float]:
    """Stratified k-fold accuracy of a linear probe on features X [n, d] with labels y [n]: (mean, std)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score  # deferred: sklearn

    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = cross_val_score(_probe(C, seed), X, y, cv=cv, scoring="accuracy")
    return float(scores.mean()), float(scores.std())


def probe_heldout(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, C: float = 1.0,
                  seed: int = 0) -> float:
    """Accuracy on (X_test, y_test) of a probe fitted on all of (X, y)."""
    return float(_probe(C, seed).fit(X, y).score(X_test, y_test))


def probe_layers(train: torch.Tensor, y: np.ndarray, test: torch.Tensor, y_test: np.ndarray, folds: int,
                 C: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-layer probes. train [n_layers, n, d_model], test [n_layers, m, d_model] -> cv_mean, cv_std,
    heldout, each [n_layers]."""
    rows = []
    for L in range(train.shape[0]):
        X, Xt = train[L].double().numpy(), test[L].double().numpy()
        rows.append((*probe_cv(X, y, folds, C, seed), probe_heldout(X, y, Xt, y_test, C, seed)))
    return tuple(np.array(col) for col in zip(*rows, strict=False))


def last_token_features(bridge, batch: common.PromptBatch, hook: str, batch_size: int) -> torch.Tensor:
    """Site `hook` (resid_post: `blocks.{L}.hook_resid_post`, resid_pre) at position -1 for every layer:
    [n_layers, n_prompts, d_model]."""
    names = sites_of(bridge).hook_names(hook)
    acts = common.collect(bridge, batch, names, last=1, batch_size=batch_size)
    return torch.stack([acts[n][:, -1] for n in names])


def run(ctx, spec: Spec) -> ProbingResult:
    """load → last-token activations (train, eval; harmful = 1, harmless = 0) → probes per layer."""
    models = common.load_pair(ctx)
    tok = models[0][2]
    h_train, s_train = common.prompt_sets(spec.n_train, "train", tok, spec.max_prompt_tokens, system=spec.system)
    h_eval, s_eval = common.prompt_sets(spec.n_eval, "eval", tok, spec.max_prompt_tokens, system=spec.system)
    train = common.encode_prompts(tok, h_train + s_train, spec.system)
    test = common.encode_prompts(tok, h_eval + s_eval, spec.system)
    y = np.array([1] * spec.n_train + [0] * spec.n_train)
    y_test = np.array([1] * spec.n_eval + [0] * spec.n_eval)
    cv_mean, cv_std, heldout = [], [], []
    n_layers = None
    for _label, model, tokenizer in models:
        bridge = boot_bridge(model, tokenizer)
        if n_layers is not None and bridge.cfg.n_layers != n_layers:
            raise ValueError(f"--model has {n_layers} layers, --compare {bridge.cfg.n_layers}: probes share axes")
        n_layers = bridge.cfg.n_layers
        feats_train = last_token_features(bridge, train, spec.hook, spec.batch_size)
        feats_test = last_token_features(bridge, test, spec.hook, spec.batch_size)
        del bridge
        m, s, h = probe_layers(feats_train, y, feats_test, y_test, spec.folds, spec.C, ctx.seed)
        cv_mean.append(m), cv_std.append(s), heldout.append(h)
    refs = [str(ctx.model)] + ([str(ctx.compare)] if ctx.compare is not None else [])
    return ProbingResult(labels=[m[0] for m in models], refs=refs, n_layers=n_layers, n_train=spec.n_train,
                         n_eval=spec.n_eval, folds=spec.folds, hook=spec.hook,
                         cv_mean=torch.tensor(np.array(cv_mean), dtype=torch.float32),
                         cv_std=torch.tensor(np.array(cv_std), dtype=torch.float32),
                         heldout=torch.tensor(np.array(heldout), dtype=torch.float32))
