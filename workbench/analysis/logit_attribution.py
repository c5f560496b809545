"""Direct logit attribution of the refusal logit difference, and a logit lens of the refusal tokens.

Direct logit attribution (Elhage et al. 2021; TransformerLens `cache.decompose_resid` + `apply_ln_to_stack`).
At the last prompt position the final residual stream is a sum of writes,

    resid_final = hook_embed + Σ_L ( hook_attn_out[L] + hook_mlp_out[L] ),   hook_attn_out[L] = Σ_h z[L, h] W_O[L, h]

(Gemma 3 normalises the attention output before the residual add, hook_attn_out[L] = norm(Σ_h z W_O): the heads
are split through that norm with its RMS frozen, `sites.heads_to_attn_out`, so that they still sum to it)

and the logits are W_U (w_ln ⊙ resid_final / s), where s = `ln_final.hook_scale` (the RMS of resid_final,
cached from the real forward pass: freezing it makes the map from writes to logits linear, as in
TransformerLens's `apply_ln_to_stack`). The metric is the refusal logit difference of `common`, which is a
logsumexp difference and not linear; we attribute its first-order form, the weighted logit difference

    Δ_w = Σ_{t∈R} w_t logit_t − Σ_{t∈C} w_t logit_t,    w = softmax of the logits within each set (per prompt)

(its gradient direction, `common.score_direction`). Each write c contributes (w_ln ⊙ c / s) · W_U d, and the
contributions of embed + all attn + all MLP sum exactly to Δ_w (tested); heads split each attn write exactly
(no o_proj bias in the Llama and Gemma 3 families).

Logit lens (nostalgebraist 2020). The refusal score of `blocks.{L}.hook_resid_post` at the last position read
out through the final norm (with its own RMS) and the unembedding, per layer: where refusal becomes readable.

Both on `n_prompts` harmful and `n_prompts` harmless eval prompts, for --model and (if given) --compare;
means over prompts with bootstrap 95 % intervals.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import Field

from workbench.analysis import common
from workbench.analysis.result import AnalysisResult
from workbench.config import Spec as _Spec
from workbench.models import boot_bridge
from workbench.models.sites import sites_of

SETS = ("harmful", "harmless")


class Spec(_Spec):
    n_prompts: int = Field(32, ge=2)  # per class, eval split
    max_prompt_tokens: int = Field(96, ge=8)
    batch_size: int = Field(16, ge=1)
    n_boot: int = Field(1000, ge=100)
    system: str | None = None  # system prompt for every prompt (None: the chat template's default)


@dataclass(frozen=True)
class LogitAttributionResult(AnalysisResult):
    """Shapes: M = len(labels) models, S = 2 prompt sets (SETS: harmful, harmless), L layers, H heads.

    score [M, S]: mean refusal logit difference; weighted [M, S]: mean weighted logit difference Δ_w
    (= embed + Σ attn + Σ mlp contributions); embed [M, S];
    attn, attn_low, attn_high, mlp, mlp_low, mlp_high [M, S, L]; heads [M, S, L, H];
    lens, lens_low, lens_high [M, S, L]: logit-lens refusal score of resid_post per layer."""

    labels: list[str]
    refs: list[str]
    sets: list[str]
    n_layers: int
    n_heads: int
    n_prompts: int
    refusal_tokens: list[str]
    compliance_tokens: list[str]
    score: torch.Tensor
    weighted: torch.Tensor
    embed: torch.Tensor
    attn: torch.Tensor
    attn_low: torch.Tensor
    attn_high: torch.Tensor
    mlp: torch.Tensor
    mlp_low: torch.Tensor
    mlp_high: torch.Tensor
    heads: torch.Tensor
    lens: torch.Tensor
    lens_low: torch.Tensor
    lens_high: torch.Tensor

    def headline(self) -> dict:
        out = {}
        for m, label in enumerate(self.labels):
            gap = {k: (getattr(self, k)[m, 0] - getattr(self, k)[m, 1]) for k in ("attn", "mlp")}
            top_heads = (self.heads[m, 0] - self.heads[m, 1]).flatten().topk(min(3, self.heads[m, 0].numel()))
            out[label] = {
                "refusal_score_harmful": float(self.score[m, 0]), "refusal_score_harmless": float(self.score[m, 1]),
                "top_attn_layer_harmful_minus_harmless": int(gap["attn"].argmax()),
                "top_mlp_layer_harmful_minus_harmless": int(gap["mlp"].argmax()),
                "top_heads_harmful_minus_harmless": [list(divmod(int(i), self.n_heads))
                                                     for i in top_heads.indices],
                "lens_first_layer_harmful_above_harmless_by_1": _first(self.lens[m, 0] - self.lens[m, 1], 1.0),
            }
        return out


def _first(curve: torch.Tensor, level: float) -> int | None:
    hits = torch.nonzero(curve >= level).flatten()
    return int(hits[0]) if len(hits) else None


@torch.inference_mode()
def attribute(model, bridge, batch: common.PromptBatch, tokens: common.RefusalTokens, batch_size: int = 16
              ) -> dict[str, torch.Tensor]:
    """Per-prompt attributions at position -1.

    Returns score, weighted, embed [n]; attn, mlp [n, L]; heads [n, L, H]; lens [n, L] (float64).
    `model` is the HF model the bridge was booted from (final norm and unembedding for the logit lens).
    """
    sites = sites_of(model)
    L = sites.n_layers
    embed, scale_name = sites.hook_name("embed"), sites.hook_name("final_norm_scale")
    attn_n, mlp_n, z_n, resid_n = (sites.hook_names(k) for k in ("attn_out", "mlp_out", "head_in", "resid_post"))
    names = [embed, scale_name] + attn_n + mlp_n + z_n + resid_n
    acts, logits = common.collect(bridge, batch, names, last=1, batch_size=batch_size, with_logits=True)
    a = {k: v[:, -1].double() for k, v in acts.items()}  # [n, ...] at the last position
    final_norm, lm_head = sites.module(model, "final_norm"), sites.module(model, "lm_head")
    norm_w = sites.final_norm_gain(model).double().cpu()  # [d_model]
    W_U = lm_head.weight.detach().double().cpu().T  # [d_model, d_vocab]
    W_O = bridge.W_O.detach().double().cpu()  # [L, H, d_head, d_model]
    d = common.score_direction(logits, tokens).double()  # [n, d_vocab]
    u = d @ W_U.T  # [n, d_model]: the logit-difference direction in the residual stream
    scale = a[scale_name]  # [n, 1]

    def contrib(x):  # x [n, ..., d_model] -> [n, ...]
        y = x * norm_w / scale.view(-1, *([1] * (x.dim() - 1)))
        return torch.einsum("n...d,nd->n...", y, u)

    attn = torch.stack([contrib(a[attn_n[i]]) for i in range(L)], 1)
    mlp = torch.stack([contrib(a[mlp_n[i]]) for i in range(L)], 1)
    head_out = torch.stack([sites.heads_to_attn_out(model, i, torch.einsum("nhe,hed->nhd", a[z_n[i]], W_O[i]))
                            for i in range(L)], 1)
    heads = contrib(head_out)  # [n, L, H]
    resid = torch.stack([a[resid_n[i]] for i in range(L)], 1)  # [n, L, d_model]
    p = next(model.parameters())
    lens = torch.stack([common.refusal_score(
        lm_head(final_norm(resid[:, i].to(p.device, p.dtype))).float().cpu(), tokens)
        for i in range(L)], 1).double()  # [n, L]
    return {"score": common.refusal_score(logits, tokens).double(), "weighted": (d * logits.double()).sum(-1),
            "embed": contrib(a[embed]), "attn": attn, "mlp": mlp, "heads": heads, "lens": lens}


def run(ctx, spec: Spec) -> LogitAttributionResult:
    """load → cache the last position → attribute per component and head → logit lens."""
    models = common.load_pair(ctx)
    tok = models[0][2]
    tokens = common.refusal_tokens(tok)
    harmful, harmless = common.prompt_sets(spec.n_prompts, "eval", tok, spec.max_prompt_tokens, system=spec.system)
    batches = [common.encode_prompts(tok, harmful, spec.system), common.encode_prompts(tok, harmless, spec.system)]
    fields: dict[str, list] = {}
    shape = None
    for _label, model, tokenizer in models:
        bridge = boot_bridge(model, tokenizer)
        if shape is not None and shape != (bridge.cfg.n_layers, bridge.cfg.n_heads):
            raise ValueError("--model and --compare differ in layers/heads; attributions share axes")
        shape = (bridge.cfg.n_layers, bridge.cfg.n_heads)
        per_set: dict[str, list] = {}
        for batch in batches:
            att = attribute(model, bridge, batch, tokens, spec.batch_size)
            for k in ("score", "weighted", "embed", "heads"):
                per_set.setdefault(k, []).append(att[k].mean(0))
            for k in ("attn", "mlp", "lens"):
                s = common.mean_ci(att[k].numpy(), n_boot=spec.n_boot, seed=ctx.seed)
                per_set.setdefault(k, []).append(torch.tensor(s["mean"]))
                per_set.setdefault(f"{k}_low", []).append(torch.tensor(s["low"]))
                per_set.setdefault(f"{k}_high", []).append(torch.tensor(s["high"]))
        del bridge
        for k, v in per_set.items():
            fields.setdefault(k, []).append(torch.stack(v))
    refs = [str(ctx.model)] + ([str(ctx.compare)] if ctx.compare is not None else [])
    return LogitAttributionResult(
        labels=[m[0] for m in models], refs=refs, sets=list(SETS), n_layers=shape[0], n_heads=shape[1],
        n_prompts=spec.n_prompts, refusal_tokens=tokens.refusal_str, compliance_tokens=tokens.compliance_str,
        **{k: torch.stack(v).float() for k, v in fields.items()})
