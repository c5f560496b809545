"""Freeze / Freeze+ / ML-LR: keep the safety-critical parts of the aligned model (nearly) fixed while fine-tuning.

    Freeze   safety-critical layers get no update: they are left out of every optimizer group (Wei et al.,
             "Assessing the Brittleness of Safety Alignment via Pruning and Low-Rank Modifications", ICML 2024,
             arXiv:2402.05162, freeze the safety-critical regions they locate; Li et al., "Safety Layers in
             Aligned Large Language Models", ICLR 2025, arXiv:2408.17003, freeze the "safety layers").
    Freeze+  Freeze, plus — our definition, there is no single canonical one — the token embeddings / tied
             LM head and the attention modules (`self_attn`) of *every* layer (`plus_modules`): only the MLPs
             of the non-safety layers train. With LoRA on attention projections only (the default targets)
             that leaves nothing to train, so Freeze+ needs `--method full` or LoRA targets that include MLP
             projections (checked before training, with that fix in the error).
    ML-LR    Du et al., "Towards Secure Tuning: Mitigating Security Risks Arising from Benign Instruction
             Fine-Tuning", arXiv:2410.04524: per-module learning rates — the modules outside the robust set
             (here: the safety-critical ones) train with lr × `lr_factor`, the rest with the full lr.

All three use the `param_groups` hook of the loop (parameters left out of every group are frozen, so frozen
weights stay bit-equal). Parameters are addressed by decoder layer and module type in plain and LoRA naming
alike (`model.layers.3.mlp.up_proj.weight`, `base_model.model.model.layers.3.self_attn.q_proj.lora_A.default
.weight`): a parameter is safety-critical when its layer is selected and it lies in one of `modules` (None =
the whole layer).

Which layers (first that applies):
  1. `layers=[...]`: as given.
  2. `analysis=FOLDER`: the `top_k` layers an analysis result folder (its `result.json`) ranks highest —
       WandaResult            mean share of safety-critical (set-difference) weights per layer (`density`);
       RefusalDirectionResult how much each layer widens the harmful − harmless gap along the selected refusal
                              direction (`signal_selected`, resid_pre of layer l+1 minus of layer l);
       DriftResult            relative ℓ2 drift of each layer's output under the attack (`rel_l2`);
       any result with a `safety_layers` list field: that list.
  3. neither: a probe on the aligned model — per layer, the mean first-order saliency |W ⊙ ∇_W h| of the
     loss h on `n_probe` safety examples (AdvBench train prompts → refusals), top_k layers (SNIP-style, as in
     Wei et al.; cheap: one backward pass per probe batch).
top_k defaults to max(1, round(L/4)) of the L decoder layers (Li et al. find safety layers to be a contiguous
block of roughly a fifth to a quarter of the depth). The chosen layers and their source go into the run's
training notes.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import Field, model_validator

from workbench.config import Spec
from workbench.data.chat import collate, encode
from workbench.defenses.context import TrainingContext
from workbench.defenses.finetune.common import matches, refusal_samples
from workbench.models import load_model
from workbench.models.registry import model_folder
from workbench.models.sites import container_of, layer_of, sites_of
from workbench.training.plugins import TrainPlugin, lm_loss


class SelectionParams(Spec):
    """Which parameters are safety-critical (shared by Freeze, Freeze+ and ML-LR)."""

    layers: list[int] | None = None  # safety-critical decoder layers, given directly
    analysis: str | None = None  # or: an analysis result folder to read them from
    top_k: int | None = Field(None, ge=1)  # layers taken from an analysis / the probe; None = round(L/4)
    modules: list[str] | None = None  # module types within those layers (q_proj, self_attn, mlp, ...); None = all
    n_probe: int = Field(32, ge=1)  # safety examples for the default probe

    @model_validator(mode="after")
    def _one_source(self):
        if self.layers is not None and self.analysis is not None:
            raise ValueError("give layers=[...] or analysis=FOLDER, not both")
        return self


class FreezeParams(SelectionParams):
    pass


class FreezePlusParams(SelectionParams):
    plus_modules: list[str] = ["embed_tokens", "lm_head", "self_attn"]  # frozen in every layer as well


class MLLRParams(SelectionParams):
    lr_factor: float = Field(0.1, ge=0)  # learning-rate multiplier of the safety-critical modules


# ----------------------------------------------------------------------------------------- which layers

def default_top_k(n_layers: int) -> int:
    return max(1, round(n_layers / 4))


def _top(scores: dict[int, float], k: int) -> list[int]:
    finite = {layer: s for layer, s in scores.items() if s == s}  # drop NaN
    return sorted(sorted(finite, key=lambda layer: finite[layer], reverse=True)[:k])


def layers_from_analysis(folder: str | Path, top_k: int | None) -> tuple[list[int], str]:
    """(layers, how they were read) from an analysis result folder (see the module docstring)."""
    folder = Path(folder)
    path = folder / "result.json"
    if not path.is_file():
        raise ValueError(f"analysis={str(folder)!r}: no result.json there; pass an analysis result folder "
                         f"(workbench analyze ... --out DIR) or layers=[...]")
    data = json.loads(path.read_text())
    kind, fields = data.get("type", "?"), data.get("fields", {})
    tensors = {}
    if data.get("tensors"):
        from safetensors.torch import load_file  # deferred: safetensors

        tensors = load_file(str(folder / "tensors.safetensors"))
    if fields.get("safety_layers") is not None:
        return sorted(int(layer) for layer in fields["safety_layers"]), f"{kind}.safety_layers"
    if kind == "WandaResult":
        density, rows = tensors["density"], fields["layers"]
        scores = {int(layer): float(torch.nanmean(density[i])) for i, layer in enumerate(rows) if int(layer) >= 0}
        return _top(scores, top_k or default_top_k(len(scores))), "WandaResult.density (mean per layer)"
    if kind == "RefusalDirectionResult":
        sig = tensors["signal_selected"][0].float()  # [2, L]: harmful, harmless projections at resid_pre
        gap = sig[0] - sig[1]
        scores = {layer: float(gap[layer + 1] - gap[layer]) for layer in range(gap.numel() - 1)}
        n = int(fields.get("n_layers", gap.numel()))
        return _top(scores, top_k or default_top_k(n)), "RefusalDirectionResult.signal_selected (gap gain)"
    if kind == "DriftResult":
        rel = tensors["rel_l2"].float()  # [L + 1], index 0 = embeddings
        scores = {i - 1: float(rel[i]) for i in range(1, rel.numel())}
        return _top(scores, top_k or default_top_k(len(scores))), "DriftResult.rel_l2"
    raise ValueError(f"analysis={str(folder)!r} holds a {kind}; layers can be read from WandaResult, "
                     "RefusalDirectionResult, DriftResult or any result with a `safety_layers` field")


def probe_layers(model_ref: str, top_k: int | None, n_probe: int, seed: int, max_len: int,
                 batch_size: int = 8) -> list[int]:
    """Top-k layers by mean |W ⊙ ∇_W h| (h = LM loss of the aligned model on safety examples)."""

    model, tok = load_model(model_ref)
    for p in model.parameters():
        p.requires_grad_(True)
    samples = refusal_samples(n_probe, seed)
    enc = [encode(tok, s, max_len) for s in samples]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    for i in range(0, len(enc), batch_size):
        chunk = enc[i:i + batch_size]
        loss, _ = lm_loss(model, collate(chunk, pad))
        (loss * len(chunk) / len(enc)).backward()
    total: dict[int, float] = {}
    count: dict[int, int] = {}
    sites = sites_of(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            layer = sites.layer_of(name)
            if layer is None or p.grad is None:
                continue
            total[layer] = total.get(layer, 0.0) + float((p * p.grad).abs().sum())
            count[layer] = count.get(layer, 0) + p.numel()
    scores = {layer: total[layer] / count[layer] for layer in total}
    return _top(scores, top_k or default_top_k(len(scores)))


def n_layers_of(model_ref: str) -> int:
    folder = model_folder(model_ref)
    cfg = folder / "config.json"
    if cfg.is_file():
        n = json.loads(cfg.read_text()).get("num_hidden_layers")
        if n:
            return int(n)
    from workbench.models import load_model  # an adapter folder: ask the loaded model

    model, _ = load_model(model_ref)
    return int(model.config.num_hidden_layers)


def select_layers(params: SelectionParams, context: TrainingContext) -> tuple[list[int], str]:
    """(safety-critical layers, source) for a spec, validated against the model's depth."""
    ref = str(context.model)
    n = n_layers_of(ref)
    if params.layers is not None:
        layers, source = sorted(set(params.layers)), "layers parameter"
    elif params.analysis is not None:
        layers, source = layers_from_analysis(params.analysis, params.top_k)
        source = f"{source} in {params.analysis}"
    else:
        layers = probe_layers(ref, params.top_k or default_top_k(n), params.n_probe, context.seed,
                              context.train.max_len)
        source = f"probe: mean |W·∇W| on {params.n_probe} safety examples"
    bad = [layer for layer in layers if not 0 <= layer < n]
    if bad:
        raise ValueError(f"safety-critical layers {bad} out of range: the model has {n} decoder layers (0..{n - 1})")
    return layers, source


# ----------------------------------------------------------------------------------------- the plugin

def critical(name: str, layers: list[int], modules: list[str] | None) -> bool:
    layer = layer_of(name)
    return layer is not None and layer in layers and matches(name, modules)


class LayerLRPlugin(TrainPlugin):
    """Safety-critical parameters train at lr × `lr_factor` (0 = left out of the optimizer, i.e. frozen);
    parameters in `plus_modules` are frozen wherever they are; everything else trains at the full lr."""

    name = "freeze"

    def __init__(self, layers: list[int], modules: list[str] | None, plus_modules: list[str] | None = None,
                 lr_factor: float = 0.0, report: dict | None = None):
        self.layers, self.modules, self.plus_modules = layers, modules, plus_modules
        self.lr_factor = lr_factor
        self.report = report if report is not None else {}

    def is_critical(self, name: str) -> bool:
        return critical(name, self.layers, self.modules)

    def is_plus(self, name: str) -> bool:
        return self.plus_modules is not None and matches(name, self.plus_modules)

    def param_groups(self, named_params, lr: float) -> list[dict]:
        full, slow, frozen = [], [], []
        for n, p in named_params:
            if self.is_plus(n) or (self.is_critical(n) and self.lr_factor == 0):
                frozen.append(n)
            elif self.is_critical(n):
                slow.append((n, p))
            else:
                full.append((n, p))
        if not full and not slow:
            raise ValueError(f"{self.name}: every trainable parameter would be frozen (layers {self.layers}, "
                             f"modules {self.modules}, plus {self.plus_modules}); freeze fewer layers, or train "
                             "other weights (--method full, or LoRA targets beyond the frozen modules)")
        frozen_set = set(frozen)
        self.report.update(n_frozen_tensors=len(frozen), n_slow_tensors=len(slow), n_full_tensors=len(full),
                           frozen_parameters=int(sum(p.numel() for n, p in named_params if n in frozen_set)))
        groups = [{"params": [p for _, p in full], "lr": lr}] if full else []
        if slow:
            groups.append({"params": [p for _, p in slow], "lr": lr * self.lr_factor})
        return groups


def _target_frozen(target: str, plus: list[str]) -> bool:
    """Whether a LoRA target module type (e.g. "q_proj") lies inside one of the `plus` module types."""
    return target in plus or container_of(target) in plus


def _plugins(params: SelectionParams, context: TrainingContext, name: str, plus: list[str] | None = None,
             lr_factor: float = 0.0) -> list[TrainPlugin]:
    train = context.train
    if plus is not None and train.method == "lora":  # fail before the probe runs
        if all(_target_frozen(t, plus) for t in train.lora_targets):
            raise ValueError(f"{name} freezes {plus} everywhere, but LoRA only adapts {list(train.lora_targets)}: "
                             "nothing would train; use --method full or LoRA targets including MLP projections "
                             "(gate_proj, up_proj, down_proj)")
    layers, source = select_layers(params, context)
    report = context.notes.setdefault(name, {})
    report.update(layers=layers, source=source, modules=params.modules, plus_modules=plus, lr_factor=lr_factor)
    plugin = LayerLRPlugin(layers, params.modules, plus, lr_factor, report)
    plugin.name = name
    return [plugin]


def plugins(params: FreezeParams, context: TrainingContext) -> list[TrainPlugin]:
    return _plugins(params, context, "freeze")


def plugins_plus(params: FreezePlusParams, context: TrainingContext) -> list[TrainPlugin]:
    return _plugins(params, context, "freeze_plus", plus=list(params.plus_modules))


def plugins_ml_lr(params: MLLRParams, context: TrainingContext) -> list[TrainPlugin]:
    return _plugins(params, context, "ml_lr", lr_factor=params.lr_factor)
