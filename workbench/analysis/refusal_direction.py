"""Refusal direction (Arditi et al. 2024, "Refusal in language models is mediated by a single direction").

Method, as in the paper's section 2:

1. Collect.  `blocks.{L}.hook_resid_pre` at each post-instruction position i (the chat-template tokens after
   the user turn, `common.post_instruction_positions`) for `n_train` harmful and `n_train` harmless
   train-split prompts.
2. Compute.  Candidate r[i, L] = mean over harmful − mean over harmless (difference in means).
   Massive-activation dimensions are zeroed in every candidate (`massive_factor`; not in the paper, see below).
3. Select.   On `n_val` + `n_val` other train-split prompts, for each candidate with L < (1 − discard_last)·L_total:
     bypass  = mean refusal score on harmful prompts with r̂ ablated everywhere        (lower = better)
     induce  = mean refusal score on harmless prompts with r added at layer L          (must be > 0)
     kl      = mean KL(p_base ‖ p_ablated) of the next-token distribution at the last position on harmless
               prompts                                                                   (must be ≤ kl_threshold)
   and pick the lowest `bypass` among candidates passing both filters (if none passes, the lowest bypass
   overall, with `selected["passed_filters"] = False`). Refusal score = `common.refusal_score`, the refusal
   logit difference (the paper uses log-odds of the refusal-token mass; same ordering in practice).
4. Intervene (generation, held-out eval prompts; `intervene` is a context manager on the HF model):
     ablate  x ← x − r̂ r̂ᵀ x on every write into the residual stream (embedding output, every attention and
             every MLP output), so no layer ever sees a component along r̂ — the paper's "directional
             ablation", equivalent to orthogonalizing W_E, W_O and W_out against r̂;
     add     x ← x + α r at the input of decoder layer L, at every position (the paper's activation addition).
   Refusal rate (keywords, `workbench.evaluation.refusal.is_refusal`) on harmful prompts with and without
   ablation, on harmless prompts with and without addition; harmless answers under ablation are scored for
   coherence by their per-token NLL under the unmodified model (next to the baseline answers' NLL).
5. Refusal signal.  Projection of the last-token `hook_resid_pre` of each model (--model and --compare) on the
   --model's unit directions, per layer: on r̂[-1, L] (that layer's own last-token direction) and on the
   selected r̂; harmful vs harmless eval prompts, means with bootstrap 95 % intervals. With --compare, the
   attacked model's harmful refusal rate is also measured with the aligned direction added (`generate_for`).

Massive activations (Sun et al. 2024, "Massive activations in large language models"). A few residual
dimensions carry values orders of magnitude larger than the rest, at the attention-sink token and as a large
constant offset at every other token. The difference in means picks up a sizeable component there, and
projecting it out then moves every token by tens of units and the sink by thousands: on SmolLM2-135M every
candidate failed the KL filter and ablated generations were gibberish (which dimensions, how much of the
direction they held and the NLL of the ablated answers: docs/analyses-refusal.md). Dims whose largest
|activation| on the harmless train prompts (any layer, any real position) exceeds `massive_factor` x the
median dimension's are therefore set to 0 in the candidates (`massive_dims` in the result);
`massive_factor=None` keeps the paper's raw difference in means.

`direction_from=RUN_FOLDER` skips steps 1-3 and reuses that run's candidate directions and selection (same
number of layers and d_model required): e.g. measure a second attacked model against the aligned model's
direction without recomputing it.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from workbench.analysis import common
from workbench.analysis.result import AnalysisResult
from workbench.config import DType, GenerationSpec
from workbench.config import Spec as _Spec
from workbench.data.chat import prompt_ids
from workbench.evaluation.refusal import is_refusal
from workbench.evaluation.stats import rate
from workbench.generation import generate
from workbench.models import boot_bridge
from workbench.models.sites import sites_of
from workbench.precision import weights_in


class Spec(_Spec):
    n_train: int = Field(64, ge=2)  # per class, train split: difference in means
    n_val: int = Field(16, ge=2)  # per class, further train-split prompts: direction selection
    n_generate: int = Field(32, ge=0)  # per class, eval split: refusal rates under interventions (0: skip)
    max_new_tokens: int = Field(32, ge=1)
    discard_last: float = Field(0.2, ge=0.0, lt=1.0)  # fraction of last layers never selected
    kl_threshold: float = Field(0.1, gt=0)
    massive_factor: float | None = Field(20.0, gt=1)  # zero dims with peak |activation| > factor x median dim's
    positions: int | None = Field(None, ge=1)  # only the last k post-instruction positions (None: all)
    layer_stride: int = Field(1, ge=1)  # evaluate every k-th candidate layer (cheaper selection)
    alpha: float = 1.0  # activation addition: x + alpha * r (r = raw difference in means)
    generate_for: list[Literal["model", "compare"]] = ["model", "compare"]  # whose refusal rates to measure
    # bfloat16 (opt-in, ~1.5x faster): the selection's forward passes and the generations run with bf16 weights
    # (`precision.weights_in`); the means, the refusal signal and the answers' NLL stay float32. Its scores agree
    # with float32's to a few % of their spread, but a KL near `kl_threshold` can land on the other side of it and
    # change the chosen direction (docs/benchmarks.md): float32 is the default, and the quickstart's choice
    dtype: DType = "float32"
    # Screening (the quickstart's where bf16 is faster, `Preset.in_precision`): every candidate is first scored in
    # `screen_dtype`, then only those that could still be chosen are re-scored in `dtype`, so the choice is
    # `dtype`'s whenever each screened score is within its margin of the exact one (docs/benchmarks.md measures the
    # differences against these margins). None or equal to `dtype`: no screening.
    screen_dtype: DType | None = None
    screen_bypass_margin: float = Field(0.5, ge=0)  # refusal-logit difference
    screen_induce_margin: float = Field(0.5, ge=0)  # refusal-logit difference
    screen_kl_margin: float = Field(0.05, ge=0)  # nats, beside kl_threshold
    direction_from: str | None = None  # a refusal-direction run folder: reuse its directions and selection
    max_prompt_tokens: int = Field(96, ge=8)
    batch_size: int = Field(16, ge=1)
    n_boot: int = Field(1000, ge=100)
    n_samples: int = Field(4, ge=0)  # example answers kept per condition
    system: str | None = None  # system prompt for every prompt (None: the chat template's default)


@dataclass(frozen=True)
class RefusalDirectionResult(AnalysisResult):
    """Shapes: P = candidate post-instruction positions, L = n_layers, d = d_model, M = models (labels).

    directions [P, L, d]: differences in means (resid_pre), massive_dims zeroed; position_labels[i] names row i.
    bypass, induce, kl [P, L]: selection scores (nan where not evaluated).
    direction [d]: the selected raw r; selected: {"position", "layer", "passed_filters", "bypass", "induce",
    "kl", "norm"}; base_scores: unmodified refusal scores on the validation prompts.
    signal, signal_low, signal_high [M, 2, L]: projection on each layer's last-token r̂ (row 0 harmful,
    row 1 harmless); signal_selected(_low/_high) [M, 2, L]: projection on the selected r̂.
    generation: label -> condition -> rate dict (k, n, value %, low, high) or NLL; samples: examples."""

    model: str
    compare: str | None
    labels: list[str]
    n_layers: int
    position_labels: list[str]
    candidate_layers: list[int]
    massive_dims: list[int]
    directions: torch.Tensor
    bypass: torch.Tensor
    induce: torch.Tensor
    kl: torch.Tensor
    direction: torch.Tensor
    selected: dict
    base_scores: dict
    signal: torch.Tensor
    signal_low: torch.Tensor
    signal_high: torch.Tensor
    signal_selected: torch.Tensor
    signal_selected_low: torch.Tensor
    signal_selected_high: torch.Tensor
    generation: dict
    samples: list

    def headline(self) -> dict:
        out = {"selected": self.selected, "base_scores": self.base_scores, "massive_dims": self.massive_dims}
        for label, conds in self.generation.items():
            for cond, v in conds.items():
                out[f"{label}_{cond}"] = v["value"] if isinstance(v, dict) and "value" in v else v
        return out


# -------------------------------------------------------------------------------------- interventions


def _unit(direction: torch.Tensor) -> torch.Tensor:
    return direction / direction.norm().clamp_min(1e-12)


def _project_out(x: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """x − (x·r̂) r̂ over the last axis: [..., d_model]."""
    u = unit.to(device=x.device, dtype=x.dtype)
    return x - (x @ u).unsqueeze(-1) * u


@contextlib.contextmanager
def intervene(model, direction: torch.Tensor, mode: Literal["ablate", "add"], layer: int | None = None,
              alpha: float = 1.0) -> Iterator[None]:
    """Forward hooks on an HF causal LM (`workbench.models.sites`), active inside the `with` block (works with
    `generate`).

    direction: [d_model]. mode "ablate": project r̂ out of every write into the residual stream, at every
    position: the embedding output and each decoder layer's attn_out and mlp_out (what the attention and MLP
    blocks add to the residual stream). mode "add": add alpha·direction to the input of decoder layer `layer`
    (its resid_pre) at every position.
    """
    sites = sites_of(model)
    n_layers = sites.n_layers
    with contextlib.ExitStack() as stack:
        if mode == "ablate":
            unit = _unit(direction.detach().float())

            def project(t: torch.Tensor) -> torch.Tensor:
                return _project_out(t, unit)

            stack.enter_context(sites.edit(model, "embed", {None: project}))
            for kind in ("attn_out", "mlp_out"):
                stack.enter_context(sites.edit(model, kind, dict.fromkeys(range(n_layers), project)))
        elif mode == "add":
            if layer is None or not 0 <= layer < n_layers:
                raise ValueError(f"mode 'add' needs a layer in [0, {n_layers}), got {layer}")
            vec = (alpha * direction.detach().float())
            stack.enter_context(sites.edit(model, "resid_pre", {layer: lambda t: t + vec.to(t.device, t.dtype)}))
        else:
            raise ValueError(f"mode must be 'ablate' or 'add', got {mode!r}")
        yield


# ------------------------------------------------------------------------------------------ collect


def mean_activations(bridge, batch: common.PromptBatch, positions: int, batch_size: int) -> torch.Tensor:
    """Mean `blocks.{L}.hook_resid_pre` over prompts at the last `positions` positions: [positions, L, d]."""
    names = sites_of(bridge).hook_names("resid_pre")
    acts = common.collect(bridge, batch, names, last=positions, batch_size=batch_size)
    return torch.stack([acts[n].double().mean(0) for n in names], dim=1).float()


def candidate_directions(bridge, harmful: common.PromptBatch, harmless: common.PromptBatch, positions: int,
                         batch_size: int = 16) -> torch.Tensor:
    """Difference in means r[i, L] = mean_harmful − mean_harmless of resid_pre: [positions, n_layers, d_model]."""
    return (mean_activations(bridge, harmful, positions, batch_size)
            - mean_activations(bridge, harmless, positions, batch_size))


@torch.inference_mode()
def massive_dimensions(bridge, batch: common.PromptBatch, factor: float, batch_size: int = 16) -> list[int]:
    """Residual dimensions whose peak |activation| (resid_pre of every layer and the final resid_post, every
    real position of `batch`) exceeds `factor` x the median over dimensions of that peak."""
    sites = sites_of(bridge)
    names = sites.hook_names("resid_pre") + [sites.hook_name("resid_post", sites.n_layers - 1)]
    peak = torch.zeros(bridge.cfg.d_model)
    device = bridge.cfg.device
    for start, stop in common.batch_slices(len(batch), batch_size):
        ids, mask = batch.rows(start, stop)
        _, cache = bridge.run_with_cache(ids.to(device), attention_mask=mask.to(device), names_filter=names,
                                         logits_to_keep=1)
        real = mask.bool().to(device)
        for n in names:
            peak = torch.maximum(peak, cache[n][real].abs().amax(0).float().cpu())
    return torch.nonzero(peak > factor * peak.median()).flatten().tolist()


def _kl(base_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(p_base ‖ p) per row: [n, vocab] -> [n]."""
    lp, lq = torch.log_softmax(base_logits.double(), -1), torch.log_softmax(logits.double(), -1)
    return (lp.exp() * (lp - lq)).sum(-1)


Candidate = tuple[int, int]  # (position index, layer)
Scores = tuple[float, float, float]  # (bypass, induce, kl)


def _score(model, r: torch.Tensor, layer: int, harmful_val: common.PromptBatch, harmless_val: common.PromptBatch,
           base_s: torch.Tensor, tokens: common.RefusalTokens, spec: Spec) -> Scores:
    """One candidate's bypass, induce and KL, in whatever precision the model is in (`base_s`: its unmodified
    harmless logits, in the same precision)."""
    with intervene(model, r, "ablate"):
        abl_h = common.last_logits(model, harmful_val, spec.batch_size)
        abl_s = common.last_logits(model, harmless_val, spec.batch_size)
    with intervene(model, r, "add", layer=layer, alpha=spec.alpha):
        add_s = common.last_logits(model, harmless_val, spec.batch_size)
    return (float(common.refusal_score(abl_h, tokens).mean()), float(common.refusal_score(add_s, tokens).mean()),
            float(_kl(base_s, abl_s).mean().float()))


def _passes(score: Scores, spec: Spec) -> bool:
    return score[1] > 0 and score[2] <= spec.kl_threshold


def _rule(scores: dict[Candidate, Scores], spec: Spec) -> tuple[Candidate, bool]:
    """The paper's choice: the lowest bypass among candidates passing both filters, else the lowest overall."""
    passing = [c for c, v in scores.items() if _passes(v, spec)]
    pool = passing or list(scores)
    return min(pool, key=lambda c: (scores[c][0], c)), bool(passing)


def _verified_choice(screened: dict[Candidate, Scores], exact: Callable[[Candidate], Scores],
                     spec: Spec) -> tuple[Candidate, bool]:
    """`_rule` on exact scores, computing exact scores only for the candidates the screen cannot rule out.

    A candidate is ruled out when, with every screened score within its margin of the exact one, it cannot pass
    the filters, or its bypass cannot beat the best exact passing bypass found so far (candidates are re-scored
    in order of screened bypass, so the search stops early). The result is `_rule`'s on the exact scores whenever
    |screened − exact| stays within the margins (Spec.screen_*_margin)."""

    def may_pass(v: Scores) -> bool:
        return v[1] > -spec.screen_induce_margin and v[2] <= spec.kl_threshold + spec.screen_kl_margin

    def best(pool: list[Candidate], need_pass: bool) -> Candidate | None:
        found, low = None, float("inf")
        for c in sorted(pool, key=lambda c: (screened[c][0], c)):
            if screened[c][0] - spec.screen_bypass_margin > low:
                break
            v = exact(c)
            if (not need_pass or _passes(v, spec)) and (found is None or (v[0], c) < (low, found)):
                found, low = c, v[0]
        return found

    chosen = best([c for c, v in screened.items() if may_pass(v)], need_pass=True)
    if chosen is not None:
        return chosen, True
    return best(list(screened), need_pass=False), False


def select_direction(model, directions: torch.Tensor, harmful_val: common.PromptBatch,
                     harmless_val: common.PromptBatch, tokens: common.RefusalTokens, spec: Spec, bar=None) -> dict:
    """Score every candidate (position i, layer L < cutoff, every `layer_stride`-th) and select one.

    Zero candidates (identical means, e.g. the embeddings of the template tokens) are skipped. With
    `spec.screen_dtype` (another precision than `spec.dtype`), every candidate is scored in that precision first
    and only those that could be chosen are re-scored in `spec.dtype` (`_verified_choice`): their scores replace
    the screened ones and `selected["rescored"]` lists them.
    Returns {"bypass", "induce", "kl": [P, L] float tensors (nan = not evaluated), "layers": candidate layers,
    "selected": {...}, "base": {...}}.
    """
    P, n_layers, _ = directions.shape
    cutoff = max(1, int(n_layers * (1 - spec.discard_last)))
    layers = list(range(0, cutoff, spec.layer_stride))
    norms = directions.norm(dim=-1)
    candidates = [(i, L) for i in range(P) for L in layers
                  if norms[i, L] > 1e-6 * norms.max()]  # e.g. resid_pre of layer 0 at template tokens: r = 0
    screen = spec.screen_dtype if spec.screen_dtype not in (None, spec.dtype) else None

    def score_all(dtype) -> dict[Candidate, Scores]:
        with weights_in(model, dtype):
            base_s = common.last_logits(model, harmless_val, spec.batch_size)
            out = {}
            for i, L in candidates:
                out[i, L] = _score(model, directions[i, L], L, harmful_val, harmless_val, base_s, tokens, spec)
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.update(P * len(layers) - len(candidates))  # the zero candidates, skipped
        return out

    with weights_in(model, spec.dtype):
        base_h = common.last_logits(model, harmful_val, spec.batch_size)
        base_s = common.last_logits(model, harmless_val, spec.batch_size)
    if screen is None:
        scores = score_all(spec.dtype)
        (i, L), passed = _rule(scores, spec) if scores else ((0, 0), False)
        rescored: list[Candidate] = []
    else:
        scores = score_all(screen)
        exact: dict[Candidate, Scores] = {}

        def rescore(c: Candidate) -> Scores:
            if c not in exact:
                with weights_in(model, spec.dtype):
                    exact[c] = _score(model, directions[c], c[1], harmful_val, harmless_val, base_s, tokens, spec)
            return exact[c]

        (i, L), passed = _verified_choice(scores, rescore, spec) if scores else ((0, 0), False)
        scores.update(exact)
        rescored = sorted(exact)
    maps = {k: torch.full((P, n_layers), float("nan")) for k in ("bypass", "induce", "kl")}
    for (ci, cl), v in scores.items():
        for k, x in zip(("bypass", "induce", "kl"), v, strict=True):
            maps[k][ci, cl] = x
    selected = {"position": i - P, "position_index": i, "layer": L, "passed_filters": passed,
                "bypass": float(maps["bypass"][i, L]), "induce": float(maps["induce"][i, L]),
                "kl": float(maps["kl"][i, L]), "norm": float(directions[i, L].norm())}
    if screen is not None:
        selected |= {"screen_dtype": screen, "rescored": [list(c) for c in rescored]}
    base = {"harmful_val": float(common.refusal_score(base_h, tokens).mean()),
            "harmless_val": float(common.refusal_score(base_s, tokens).mean())}
    return {**maps, "layers": layers, "selected": selected, "base": base}


# ------------------------------------------------------------------------------------------- generate


@torch.inference_mode()
def answer_nll(model, tokenizer, prompts: list[str], answers: list[str], batch_size: int = 16,
               system: str | None = None) -> float:
    """Mean per-token negative log-likelihood of `answers` (after their chat-formatted prompts) under `model`:
    a fluency score — degenerate or garbled answers score high. Empty answers are skipped."""
    rows = []
    for p, a in zip(prompts, answers, strict=False):
        a_ids = tokenizer(a, add_special_tokens=False)["input_ids"]
        if a_ids:
            rows.append((prompt_ids(tokenizer, p, system), a_ids))
    if not rows:
        return float("nan")
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    total, count = 0.0, 0
    for start, stop in common.batch_slices(len(rows), batch_size):
        chunk = rows[start:stop]
        width = max(len(p) + len(a) for p, a in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for j, (p, a) in enumerate(chunk):
            seq = p + a
            ids[j, :len(seq)] = torch.tensor(seq)
            mask[j, :len(seq)] = 1
            labels[j, len(p):len(seq)] = torch.tensor(a)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().cpu()
        lp = torch.log_softmax(logits[:, :-1], -1)
        tgt = labels[:, 1:]
        keep = tgt != -100
        total += -lp.gather(-1, tgt.clamp_min(0).unsqueeze(-1)).squeeze(-1)[keep].sum().item()
        count += int(keep.sum())
    return total / count


def _refusal_rate(answers: list[str]) -> dict:

    return rate([is_refusal(a) for a in answers]).to_dict()


def measure_generation(model, tokenizer, direction: torch.Tensor, layer: int, harmful: list[str],
                       harmless: list[str], spec: Spec, progress: bool = False, label: str = "model",
                       full: bool = True) -> tuple[dict, list]:
    """Refusal rates (and harmless NLL) with and without the interventions; returns (metrics, samples).

    full=True: harmful baseline/ablated, harmless baseline/added/ablated (+ NLLs). full=False (a compare
    model): harmful baseline and harmful with the direction added.
    """

    gen = GenerationSpec(max_new_tokens=spec.max_new_tokens, batch_size=spec.batch_size, system_prompt=spec.system,
                         dtype=spec.dtype)

    def answers(prompts, mode=None, desc=""):
        ctx = intervene(model, direction, mode, layer=layer, alpha=spec.alpha) if mode else contextlib.nullcontext()
        with ctx:
            return generate(model, tokenizer, prompts, gen, progress=progress, desc=f"{label} {desc}")

    conds = {"harmful_baseline": (harmful, None), "harmful_ablated": (harmful, "ablate"),
             "harmless_baseline": (harmless, None), "harmless_added": (harmless, "add"),
             "harmless_ablated": (harmless, "ablate")} if full else \
        {"harmful_baseline": (harmful, None), "harmful_added": (harmful, "add")}
    out, texts = {}, {}
    for cond, (prompts, mode) in conds.items():
        texts[cond] = answers(prompts, mode, cond)
        out[cond] = _refusal_rate(texts[cond])
    if full:
        for cond in ("harmless_baseline", "harmless_ablated"):
            out[f"{cond}_nll"] = answer_nll(model, tokenizer, harmless, texts[cond], spec.batch_size, spec.system)
    samples = [{"model": label, "condition": cond, "prompt": conds[cond][0][j], "answer": texts[cond][j]}
               for cond in conds for j in range(min(spec.n_samples, len(texts[cond])))]
    return out, samples


# ---------------------------------------------------------------------------------------------- run


def _reuse(folder: str, n_layers: int, d_model: int) -> tuple[torch.Tensor, list[str], dict, list[int]]:
    """Candidate directions, position labels, selection and massive dims of an earlier refusal-direction run."""
    path = Path(folder)
    if not (path / "result.json").is_file():
        raise ValueError(f"direction_from={folder!r}: no result.json there; pass a refusal-direction run folder")
    old = RefusalDirectionResult.load(path)
    if tuple(old.directions.shape[1:]) != (n_layers, d_model):
        raise ValueError(f"direction_from={folder!r} has directions for {tuple(old.directions.shape[1:])} "
                         f"(layers, d_model); this model has ({n_layers}, {d_model})")
    sel = {"bypass": old.bypass, "induce": old.induce, "kl": old.kl, "layers": old.candidate_layers,
           "selected": {**old.selected, "from": str(path.resolve())}, "base": old.base_scores}
    return old.directions, old.position_labels, sel, old.massive_dims


def _projections(acts: torch.Tensor, units: torch.Tensor, n_boot: int, seed: int) -> tuple[np.ndarray, ...]:
    """acts [n, L, d] · units [L, d] -> mean, low, high over prompts, each [L]."""
    proj = torch.einsum("nld,ld->nl", acts.double(), units.double()).numpy()
    s = common.mean_ci(proj, n_boot=n_boot, seed=seed)
    return np.array(s["mean"]), np.array(s["low"]), np.array(s["high"])


@dataclass(frozen=True)
class SelectionInputs:
    """Steps 1-2 and the selection's prompts: directions [P, L, d] (massive dims zeroed), their position labels,
    the massive dims, and the n_val + n_val validation prompts (train split, after the n_train used for means)."""

    directions: torch.Tensor
    position_labels: list[str]
    massive_dims: list[int]
    harmful_val: common.PromptBatch
    harmless_val: common.PromptBatch


def selection_inputs(bridge, tok, spec: Spec, positions: int) -> SelectionInputs:
    """Collect + difference in means on the bridge copy (steps 1-2), and the selection's validation prompts."""
    def prompts(n: int, offset: int = 0) -> tuple[common.PromptBatch, common.PromptBatch]:
        harmful, harmless = common.prompt_sets(n, "train", tok, spec.max_prompt_tokens, offset=offset,
                                               system=spec.system)
        return common.encode_prompts(tok, harmful, spec.system), common.encode_prompts(tok, harmless, spec.system)

    harm_train, safe_train = prompts(spec.n_train)
    directions = candidate_directions(bridge, harm_train, safe_train, positions, spec.batch_size)
    massive = ([] if spec.massive_factor is None else
               massive_dimensions(bridge, safe_train, spec.massive_factor, spec.batch_size))
    directions[..., massive] = 0.0
    return SelectionInputs(directions, common.position_labels(tok, safe_train, positions), massive,
                           *prompts(spec.n_val, offset=spec.n_train))


def run(ctx, spec: Spec) -> RefusalDirectionResult:
    """load → collect → difference in means → select → intervene (generation) → refusal signal."""
    models = common.load_pair(ctx)
    _, model, tok = models[0]
    tokens = common.refusal_tokens(tok)
    P_all = common.post_instruction_positions(tok)
    P = min(P_all, spec.positions) if spec.positions else P_all
    system = spec.system
    n_sig = max(spec.n_generate, spec.n_val)
    h_eval, s_eval = common.prompt_sets(n_sig, "eval", tok, spec.max_prompt_tokens, system=system)

    bridge = boot_bridge(model, tok)
    n_layers = bridge.cfg.n_layers
    if spec.direction_from is not None:  # reuse steps 1-3 of an earlier run
        directions, labels, sel, massive = _reuse(spec.direction_from, n_layers, bridge.cfg.d_model)
    else:
        inputs = selection_inputs(bridge, tok, spec, P)
        directions, labels, massive = inputs.directions, inputs.position_labels, inputs.massive_dims
        # 3. select (HF model + hooks)
        cutoff = max(1, int(n_layers * (1 - spec.discard_last)))
        bar = common.progress_bar(ctx, P * len(range(0, cutoff, spec.layer_stride)), "select direction")
        sel = select_direction(model, directions, inputs.harmful_val, inputs.harmless_val, tokens, spec, bar)
        bar.close()
    i, L = sel["selected"]["position_index"], sel["selected"]["layer"]
    r = directions[i, L]

    # 5. (before 4, so the bridge copies can go) refusal signal: last-token resid_pre of each model projected
    #    on the aligned model's directions
    units = torch.stack([_unit(directions[-1, layer]) for layer in range(n_layers)])  # [L, d]
    r_units = _unit(r).expand(n_layers, -1)
    eval_h, eval_s = common.encode_prompts(tok, h_eval, system), common.encode_prompts(tok, s_eval, system)
    names = sites_of(model).hook_names("resid_pre")
    sig = {k: [] for k in ("signal", "signal_low", "signal_high", "signal_selected", "signal_selected_low",
                           "signal_selected_high")}
    for label, m, t in models:
        b = bridge if label == "model" else boot_bridge(m, t)
        rows = {k: [] for k in sig}
        for batch in (eval_h, eval_s):
            acts = common.collect(b, batch, names, last=1, batch_size=spec.batch_size)
            a = torch.stack([acts[n][:, -1] for n in names], dim=1)  # [n, L, d]
            for suffix, u in (("", units), ("_selected", r_units)):
                mean, lo, hi = _projections(a, u, spec.n_boot, ctx.seed)
                rows[f"signal{suffix}"].append(mean)
                rows[f"signal{suffix}_low"].append(lo)
                rows[f"signal{suffix}_high"].append(hi)
        for k in sig:
            sig[k].append(np.stack(rows[k]))
    del bridge, b  # the bridge copies are done before generation (memory)

    # 4. interventions during generation
    generation, samples = {}, []
    if spec.n_generate:
        gh, gs = h_eval[:spec.n_generate], s_eval[:spec.n_generate]
        for label, m, t in models:
            if label in spec.generate_for:
                generation[label], more = measure_generation(m, t, r, L, gh, gs, spec, ctx.progress, label,
                                                             full=label == "model")
                samples += more

    return RefusalDirectionResult(
        model=str(ctx.model), compare=None if ctx.compare is None else str(ctx.compare),
        labels=[m[0] for m in models], n_layers=n_layers, position_labels=labels, candidate_layers=sel["layers"],
        massive_dims=massive,
        directions=directions, bypass=sel["bypass"], induce=sel["induce"], kl=sel["kl"], direction=r.clone(),
        selected=sel["selected"], base_scores=sel["base"],
        **{k: torch.tensor(np.stack(v), dtype=torch.float32) for k, v in sig.items()},
        generation=generation, samples=samples)
