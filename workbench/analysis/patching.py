"""Activation patching: which layers, positions, components and heads carry refusal?

Method (Meng et al. 2022; Heimersheim & Nanda 2024, "How to use and interpret activation patching"). Run a
*target* forward pass, but overwrite one activation with its value from a *source* run, and read the
refusal logit difference (`common.refusal_score`) at the first answer position. With source score S,
target score T and patched score P (means over prompts),

    effect      = mean(P − T)
    normalized  = (P̄ − T̄) / (S̄ − T̄)       0: no change; 1: the target now scores like the source

with bootstrap 95 % intervals over prompts. All runs are on TransformerBridge copies, activations addressed
by the hook name of a model site (`workbench.models.sites`; Llama names shown):

    resid      resid_post   blocks.{L}.hook_resid_post        per layer, at all patched positions
    resid_pos  resid_post   blocks.{L}.hook_resid_post        per layer × single position -k (k = 1..positions)
    attn       attn_out     blocks.{L}.hook_attn_out          per layer (what attention adds to the residual)
    mlp        mlp_out      blocks.{L}.hook_mlp_out           per layer
    heads      head_in      blocks.{L}.attn.hook_z[:, :, h]   per layer × head (the head's output before W_O)
    window     attn_out + mlp_out of layers L..L+window-1 together (a "layer range")

Experiments (each a source → target pair over the same number of prompts):

  within model (--model only; `within`):
    harmful_into_harmless   source = model on harmful prompt i, target = model on harmless prompt i: does a
                            harmful activation make the model refuse a harmless request? (denoising)
    harmless_into_harmful   the reverse: does a harmless activation stop refusal? (noising)
    The two prompts of a pair differ in length and content, so only the last `positions` positions are
    patched, aligned from the end (left padding puts position -k at the same distance from the answer in
    both). The last `post_instruction_positions` of them are the identical chat-template tokens after the
    user turn, where Arditi et al. find the refusal signal; earlier ones are the last content tokens.

  across models (with --compare = the attacked model; `cross`):
    aligned_into_attacked   source = aligned model (--model), target = attacked model (--compare), both on
                            the same harmful prompt: which layers' activations restore refusal?
    attacked_into_aligned   the reverse: which layers' attacked activations break refusal?
    Same tokens in both runs, so every position is patched (resid_pos still scans the last few).

`compare_attacks(aligned, eha_attacked, isa_attacked)` runs aligned_into_attacked for an explicit-harmful
attack (EHA, harmful fine-tuning) and an identity-shifting attack (ISA) on the same prompts and contrasts
their per-layer restoration curves (paired bootstrap of the difference). Each attack is patched under its own
inference setting: ISA prompts carry the AOA persona system prompt it was trained with (`isa_system`). From
the CLI, `--param isa=ISA_MODEL` adds the same aligned_into_isa experiment to a patching run.

Cost: one forward pass per patch cell and prompt batch (resid: L, resid_pos: L·K, heads: L·H, window:
L − window + 1); on CPU choose `components` and `n_prompts` accordingly (docs/analyses-refusal.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from workbench.analysis import common
from workbench.analysis.result import AnalysisResult
from workbench.attacks.identity_shift import AOA_PREFIX, AOA_SYSTEM
from workbench.config import Spec as _Spec
from workbench.evaluation.stats import bootstrap_ci
from workbench.models import boot_bridge, load_model
from workbench.models.sites import Sites, sites_of

Component = Literal["resid", "resid_pos", "attn", "mlp", "heads", "window"]
ALL_COMPONENTS: tuple[str, ...] = ("resid", "resid_pos", "attn", "mlp", "heads", "window")


class Spec(_Spec):
    n_prompts: int = Field(16, ge=2)  # prompt pairs (within) / prompts (across models)
    positions: int = Field(6, ge=1)  # last K positions: the within-model patch window and the resid_pos scan
    components: list[Component] = list(ALL_COMPONENTS)
    within: Literal["harmful_into_harmless", "harmless_into_harmful", "both", "none"] = "harmful_into_harmless"
    cross: Literal["aligned_into_attacked", "attacked_into_aligned", "both", "none"] = "both"
    window: int = Field(3, ge=1)  # layers per "window" patch
    split: Literal["train", "eval"] = "eval"
    max_prompt_tokens: int = Field(96, ge=8)
    batch_size: int = Field(16, ge=1)
    n_boot: int = Field(1000, ge=100)
    system: str | None = None  # system prompt for every prompt (None: the chat template's default)
    isa: str | None = None  # optional identity-shift-attacked model: adds aligned_into_isa (see compare_attacks)
    isa_system: str | None = AOA_SYSTEM  # aligned_into_isa runs under the attack's own inference system prompt
    # ISA answers open with the persona ("I am AOA, ..."), whose first token is also a refusal's first token, so
    # the first-answer-token metric cannot see the attack; the decision is read after the trained prefix instead.
    isa_answer_prefix: str | None = AOA_PREFIX


@dataclass(frozen=True)
class PatchingResult(AnalysisResult):
    """experiments: name -> {
        "description", "source", "target" (labels), "n" (prompts), "patched_positions" ("last K" | "all"),
        "source_mean", "target_mean" (refusal logit difference),
        "components": {component: common.summarize(...) lists shaped
            resid/attn/mlp [n_layers], resid_pos [n_layers, positions], heads [n_layers, n_heads],
            window [n_layers - window + 1]}}
    position_labels: the last `positions` tokens of the first target prompt, e.g. "-1 '\\n'"."""

    model: str
    compare: str | None
    n_layers: int
    n_heads: int
    positions: int
    window: int
    position_labels: list[str]
    refusal_tokens: list[str]
    compliance_tokens: list[str]
    experiments: dict

    def headline(self) -> dict:
        out = {}
        for name, exp in self.experiments.items():
            h = {"source_mean": exp["source_mean"], "target_mean": exp["target_mean"], "n": exp["n"]}
            comps = exp["components"]
            if "resid" in comps:
                norm = np.array(comps["resid"]["normalized"])
                h["resid_best_layer"] = int(norm.argmax())
                h["resid_best_normalized"] = float(norm.max())
                h["resid_first_layer_ge_0.5"] = _first_at_least(norm, 0.5)
            if "window" in comps:
                norm = np.array(comps["window"]["normalized"])
                s = int(norm.argmax())
                h["window_best_layers"] = [s, s + self.window - 1]
                h["window_best_normalized"] = float(norm[s])
                h["window_best_ci"] = [comps["window"]["low"][s], comps["window"]["high"][s]]
                h["windows_ge_0.5"] = [[i, i + self.window - 1] for i in np.flatnonzero(norm >= 0.5).tolist()]
            for comp in ("attn", "mlp"):
                if comp in comps:
                    norm = np.array(comps[comp]["normalized"])
                    h[f"{comp}_best_layer"], h[f"{comp}_best_normalized"] = int(norm.argmax()), float(norm.max())
            if "heads" in comps:
                norm = np.array(comps["heads"]["normalized"])
                L, H = np.unravel_index(norm.argmax(), norm.shape)
                h["heads_best"], h["heads_best_normalized"] = [int(L), int(H)], float(norm.max())
            out[name] = h
        return out


def _first_at_least(curve: np.ndarray, level: float) -> int | None:
    hits = np.flatnonzero(curve >= level)
    return int(hits[0]) if len(hits) else None


# ----------------------------------------------------------------------------------------- patching core


# component -> the model site it patches (workbench.models.sites); "window" patches attn_out + mlp_out
SITE = {"resid": "resid_post", "resid_pos": "resid_post", "attn": "attn_out", "mlp": "mlp_out", "heads": "head_in"}


def patch_cells(sites: Sites, component: str, positions: int, window: int) -> list[tuple]:
    """The patch configurations of a component, in result order: [(hook names, positions, head), ...].

    positions: a list of negative offsets, or None for "the experiment's patched positions".
    """
    n_layers, n_heads = sites.n_layers, sites.n_heads
    if component in ("resid", "attn", "mlp"):
        return [([sites.hook_name(SITE[component], L)], None, None) for L in range(n_layers)]
    if component == "resid_pos":
        return [([sites.hook_name(SITE[component], L)], [k - positions], None)
                for L in range(n_layers) for k in range(positions)]
    if component == "heads":
        return [([sites.hook_name(SITE[component], L)], None, h) for L in range(n_layers) for h in range(n_heads)]
    if component == "window":
        return [([sites.hook_name(k, L) for L in range(s, s + window) for k in ("attn_out", "mlp_out")], None, None)
                for s in range(n_layers - window + 1)]
    raise ValueError(f"unknown component {component!r}; known: {', '.join(ALL_COMPONENTS)}")


def cell_shape(component: str, n_layers: int, n_heads: int, positions: int, window: int) -> tuple[int, ...]:
    return {"resid": (n_layers,), "attn": (n_layers,), "mlp": (n_layers,), "resid_pos": (n_layers, positions),
            "heads": (n_layers, n_heads), "window": (n_layers - window + 1,)}[component]


def _patch_hook(source: torch.Tensor, positions: list[int], head: int | None):
    """Hook writing `source` [b, pos_s, ...] into the activation at the negative `positions` (and `head`)."""
    def hook(act, hook):
        act = act.clone()
        if head is None:
            act[:, positions] = source[:, positions].to(act.dtype)
        else:
            act[:, positions, head] = source[:, positions, head].to(act.dtype)
        return act
    return hook


@torch.inference_mode()
def patch_scores(source_bridge, source: common.PromptBatch, target_bridge, target: common.PromptBatch,
                 tokens: common.RefusalTokens, components: list[str], positions: int | None, scan_positions: int,
                 window: int = 3, batch_size: int = 16, bar=None) -> dict[str, np.ndarray]:
    """Raw per-prompt refusal scores of one source → target patching experiment.

    source, target: prompt batches of equal size (row i of one is paired with row i of the other).
    positions: patch the last `positions` positions (None: every position; source and target ids must then be
    identical, as across models). scan_positions: K for resid_pos.
    Returns {"source": [n], "target": [n], component: [n, *cell_shape]} (numpy float64).
    """
    if len(source) != len(target):
        raise ValueError(f"source has {len(source)} prompts, target {len(target)}")
    if positions is None and not torch.equal(source.ids, target.ids):
        raise ValueError("patching every position needs identical source and target tokens")
    sites = sites_of(target_bridge)
    n_layers, n_heads = sites.n_layers, sites.n_heads
    cells = {c: patch_cells(sites, c, scan_positions, window) for c in components}
    names = sorted({n for cs in cells.values() for cell in cs for n in cell[0]})
    out: dict[str, list] = {"source": [], "target": [], **{c: [] for c in components}}
    device = target_bridge.cfg.device
    for start, stop in common.batch_slices(len(target), batch_size):
        s_ids, s_mask = source.rows(start, stop)
        t_ids, t_mask = target.rows(start, stop)
        s_ids, s_mask, t_ids, t_mask = (x.to(device) for x in (s_ids, s_mask, t_ids, t_mask))
        s_logits, cache = source_bridge.run_with_cache(s_ids, attention_mask=s_mask, names_filter=names,
                                                       logits_to_keep=1)
        t_logits = target_bridge(t_ids, attention_mask=t_mask, logits_to_keep=1)
        out["source"].append(common.refusal_score(s_logits[:, -1].cpu(), tokens))
        out["target"].append(common.refusal_score(t_logits[:, -1].cpu(), tokens))
        window_pos = list(range(-(t_ids.shape[1] if positions is None else positions), 0))
        for comp, comp_cells in cells.items():
            scores = []
            for hook_names, pos, head in comp_cells:
                pos = window_pos if pos is None else pos
                hooks = [(n, _patch_hook(cache[n], pos, head)) for n in hook_names]
                logits = target_bridge.run_with_hooks(t_ids, attention_mask=t_mask, fwd_hooks=hooks, logits_to_keep=1)
                scores.append(common.refusal_score(logits[:, -1].cpu(), tokens))
                if bar is not None:
                    bar.update(stop - start)
            out[comp].append(torch.stack(scores, dim=1))
    shapes = {c: cell_shape(c, n_layers, n_heads, scan_positions, window) for c in components}
    return {k: torch.cat(v).double().numpy().reshape(-1, *shapes.get(k, ())) for k, v in out.items()}


def _n_passes(sites: Sites, components, positions, window) -> int:
    return sum(len(patch_cells(sites, c, positions, window)) for c in components)


def _experiment(raw: dict[str, np.ndarray], description: str, source: str, target: str, patched: str,
                n_boot: int, seed: int) -> dict:
    comps = {c: common.summarize(raw["source"], raw["target"], v, n_boot=n_boot, seed=seed)
             for c, v in raw.items() if c not in ("source", "target")}
    return {"description": description, "source": source, "target": target, "n": int(len(raw["source"])),
            "patched_positions": patched, "source_mean": float(raw["source"].mean()),
            "target_mean": float(raw["target"].mean()), "components": comps}


# ---------------------------------------------------------------------------------------------- run


def run(ctx, spec: Spec) -> PatchingResult:
    """load → encode prompts → patch (within model, across models) → summarize."""
    model, tok = ctx.load("model")
    tokens = common.refusal_tokens(tok)
    harmful, harmless = common.prompt_sets(spec.n_prompts, spec.split, tok, spec.max_prompt_tokens, system=spec.system)
    harm, safe = common.encode_prompts(tok, harmful, spec.system), common.encode_prompts(tok, harmless, spec.system)
    bridge = boot_bridge(model, tok)
    n_layers, n_heads = bridge.cfg.n_layers, bridge.cfg.n_heads
    if spec.window > n_layers:
        raise ValueError(f"window={spec.window} exceeds the model's {n_layers} layers")
    K = spec.positions
    within = {"both": ["harmful_into_harmless", "harmless_into_harmful"], "none": []}.get(spec.within, [spec.within])
    cross = {"both": ["aligned_into_attacked", "attacked_into_aligned"], "none": []}.get(spec.cross, [spec.cross])
    if ctx.compare is None:
        cross = []
    others = {}
    if cross:
        cmodel, ctok = ctx.load("compare")
        common.check_same_tokenizer(tok, ctok)
        others["attacked"] = boot_bridge(cmodel, ctok)
    if spec.isa is not None:
        imodel, itok = load_model(spec.isa)
        common.check_same_tokenizer(tok, itok)
        others["isa"] = boot_bridge(imodel, itok)

    per = _n_passes(sites_of(bridge), spec.components, K, spec.window) * spec.n_prompts
    bar = common.progress_bar(ctx, per * (len(within) + len(cross) + ("isa" in others)), "patching")
    experiments = {}
    for name in within:
        src, tgt = (harm, safe) if name == "harmful_into_harmless" else (safe, harm)
        raw = patch_scores(bridge, src, bridge, tgt, tokens, spec.components, K, K, spec.window,
                           spec.batch_size, bar)
        desc = ("model on harmful prompts → model on harmless prompts" if name == "harmful_into_harmless"
                else "model on harmless prompts → model on harmful prompts")
        experiments[name] = _experiment(raw, desc, *name.split("_into_"), f"last {K}", spec.n_boot, ctx.seed)
    for name in cross:
        src, tgt = (bridge, others["attacked"]) if name == "aligned_into_attacked" else (others["attacked"], bridge)
        raw = patch_scores(src, harm, tgt, harm, tokens, spec.components, None, K, spec.window, spec.batch_size, bar)
        s, t = name.split("_into_")
        experiments[name] = _experiment(raw, f"{s} model → {t} model, same harmful prompts", s, t, "all",
                                        spec.n_boot, ctx.seed)
    if "isa" in others:
        isa_harm = common.encode_prompts(tok, harmful, spec.isa_system, spec.isa_answer_prefix)
        raw = patch_scores(bridge, isa_harm, others["isa"], isa_harm, tokens, spec.components, None, K, spec.window,
                           spec.batch_size, bar)
        experiments["aligned_into_isa"] = _experiment(raw, "aligned model → identity-shift-attacked model, same "
                                                      "harmful prompts", "aligned", "isa", "all", spec.n_boot,
                                                      ctx.seed)
    bar.close()
    return PatchingResult(model=str(ctx.model), compare=None if ctx.compare is None else str(ctx.compare),
                          n_layers=n_layers, n_heads=n_heads, positions=K, window=spec.window,
                          position_labels=common.position_labels(tok, safe, K),
                          refusal_tokens=tokens.refusal_str, compliance_tokens=tokens.compliance_str,
                          experiments=experiments)


# ------------------------------------------------------------------------------------- EHA vs ISA


@dataclass(frozen=True)
class AttackComparison(AnalysisResult):
    """Per-layer restoration of refusal (aligned → attacked patching) for two attacks on the same prompts.

    curves: attack -> component -> common.summarize lists [n_layers] (window: [n_layers - window + 1]);
    difference: component -> {"mean", "low", "high"} of normalized(EHA) − normalized(ISA), paired bootstrap
    over prompts; scores: attack -> {"source_mean", "target_mean", "system" (the system prompt used)}."""

    model: str
    attacks: dict
    n_layers: int
    window: int
    curves: dict
    difference: dict
    scores: dict

    def headline(self) -> dict:
        out = {}
        for attack, comps in self.curves.items():
            for comp, s in comps.items():
                norm = np.array(s["normalized"])
                out[f"{attack}_{comp}_best"] = {"index": int(norm.argmax()), "normalized": float(norm.max())}
        return out


def _paired_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray], comp: str, n_boot: int, seed: int):
    n = len(a["source"])
    pa, pb = a[comp].reshape(n, -1), b[comp].reshape(n, -1)
    c = pa.shape[1]
    table = np.concatenate([a["source"][:, None], a["target"][:, None], pa,
                            b["source"][:, None], b["target"][:, None], pb], axis=1)

    @np.errstate(divide="ignore", invalid="ignore")
    def diff(v, axis=0):
        na = (v[:, 2:2 + c].mean(0) - v[:, 1].mean()) / (v[:, 0].mean() - v[:, 1].mean())
        o = 2 + c
        nb = (v[:, o + 2:].mean(0) - v[:, o + 1].mean()) / (v[:, o].mean() - v[:, o + 1].mean())
        return na - nb

    lo, hi = bootstrap_ci(table, stat=diff, n_boot=n_boot, seed=seed)
    return {"mean": diff(table).tolist(), "low": np.asarray(lo).tolist(), "high": np.asarray(hi).tolist()}


def _as_model(ref):
    return ref if isinstance(ref, tuple) else load_model(ref)


def compare_attacks(aligned, eha_attacked, isa_attacked, spec: Spec | None = None, seed: int = 0,
                    names: tuple[str, str] = ("EHA", "ISA")) -> AttackComparison:
    """Contrast where two attacks removed refusal: aligned → attacked patching for each, same prompts.

    aligned, eha_attacked, isa_attacked: model references (`load_model` names/folders) or (model, tokenizer).
    Each attack is probed in its own inference setting: EHA prompts use `spec.system` (default: none), ISA
    prompts `spec.isa_system` (default: the AOA persona it was trained with) with `spec.isa_answer_prefix`
    teacher-forced at the start of the answer (default: the AOA prefix); the aligned source run sees the
    same tokens as the attacked target. Components: `spec.components` restricted to per-layer ones (resid,
    attn, mlp, window).
    """
    spec = spec or Spec(components=["resid", "attn", "mlp", "window"])
    comps = [c for c in spec.components if c in ("resid", "attn", "mlp", "window")]
    model, tok = _as_model(aligned)
    tokens = common.refusal_tokens(tok)
    harmful, _ = common.prompt_sets(spec.n_prompts, spec.split, tok, spec.max_prompt_tokens, system=spec.isa_system)
    bridge = boot_bridge(model, tok)
    raws = {}
    for label, ref, system, prefix in zip(names, (eha_attacked, isa_attacked), (spec.system, spec.isa_system),
                                          (None, spec.isa_answer_prefix), strict=False):
        amodel, atok = _as_model(ref)
        common.check_same_tokenizer(tok, atok)
        harm = common.encode_prompts(tok, harmful, system, prefix)
        raws[label] = patch_scores(bridge, harm, boot_bridge(amodel, atok), harm, tokens, comps, None,
                                   spec.positions, spec.window, spec.batch_size)
    curves = {label: {c: common.summarize(r["source"], r["target"], r[c], spec.n_boot, seed) for c in comps}
              for label, r in raws.items()}
    a, b = (raws[n] for n in names)
    difference = {c: _paired_difference(a, b, c, spec.n_boot, seed) for c in comps}
    scores = {label: {"source_mean": float(r["source"].mean()), "target_mean": float(r["target"].mean()),
                      "system": system}
              for (label, r), system in zip(raws.items(), (spec.system, spec.isa_system), strict=False)}
    refs = {names[0]: _ref(eha_attacked), names[1]: _ref(isa_attacked)}
    return AttackComparison(model=_ref(aligned), attacks=refs, n_layers=bridge.cfg.n_layers, window=spec.window,
                            curves=curves, difference=difference, scores=scores)


def _ref(x) -> str:
    return "<in memory>" if isinstance(x, tuple) else str(x)
