"""SafeLoRA: project dissimilar fine-tuning updates onto the alignment subspace (Hsu, Tsai, Lin, Chen, Yu &
Huang, "Safe LoRA: the Silver Lining of Reducing Safety Risks when Fine-tuning Large Language Models",
NeurIPS 2024, arXiv:2405.16833).

Alignment moved each weight from the unaligned to the aligned model along V = W_aligned − W_unaligned; a
fine-tuning update ΔW that points elsewhere is the suspect one. Per adapted linear layer (`[d_out, d_in]`):
  1. V  = W_aligned − W_unaligned                        (float64)
  2. C  = V Vᵀ / ‖V‖_F  (`[d_out, d_out]`; applied as V (Vᵀ ΔW) / ‖V‖_F, never formed)
  3. ΔW = B · A · scaling for a LoRA adapter (read with peft), or W_attacked − W_aligned for a merged or full
     fine-tune (our attack runs save merged weights, so this is their path; for LoRA runs ΔW is exactly the
     merged adapter, up to float rounding)
  4. similarity = cos(vec(C ΔW), vec(ΔW)); 0 when C ΔW = 0
  5. project the layers with similarity < `threshold`, or (`n_layers` = k) the k least similar layers:
     ΔW ← C ΔW, i.e. B ← C B for an adapter, W ← W_aligned + C ΔW for merged weights. Other layers keep
     the fine-tuned weights.

Deviations / choices: C is the paper's (and its code's) approximate projection, not an orthogonal projector
(V Vᵀ / ‖V‖_F equals one only when V's non-zero singular values all equal ‖V‖_F); a layer whose ΔW lies in
span(V) with equal singular values keeps similarity 1, one orthogonal to it gets C ΔW = 0 (the layer returns
to the aligned weights). C is not scale-free: ‖C ΔW‖ ≤ ‖V‖_F ‖ΔW‖, so after a small alignment (‖V‖_F ≪ 1, as
after our LoRA safety SFT) a projected layer is in effect reset to the aligned weights (see repair.json's norms);
`projection="exact"` uses the orthogonal projector U Uᵀ onto span(V) instead (same similarity ranking when
V's singular values are equal, otherwise a different one). Layers the alignment never changed (V = 0, e.g.
MLPs after a LoRA-on-attention alignment) have no subspace: they are skipped and reported, not reset. Only
linear maps inside the blocks (`modules`) are candidates; embeddings and norms changed by a full fine-tune stay
as fine-tuned. Default threshold 0.5 as in the authors' released configuration.

Precision: the similarity scores and projections are computed in float64 from float32 weights whatever `--dtype`
the repair run evaluates in (`precision.fp32_required` on every model it loads; `workbench.precision`).
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from workbench.config import Spec
from workbench.defenses.finetune.salora import lora_modules
from workbench.defenses.post.common import RepairContext, RepairResult
from workbench.models import load_model
from workbench.models.registry import _base_reference, model_folder
from workbench.models.sites import LINEAR_TYPES, linear_modules, strip_peft
from workbench.precision import fp32_required

RANK_RTOL = 1e-4  # "exact": singular values of V below this share of the largest are float noise


class SafeLoRAParams(Spec):
    threshold: float = Field(0.5, ge=-1.0, le=1.0)  # project layers whose similarity is below this
    n_layers: int | None = Field(None, ge=0)  # instead: project the n_layers least similar layers
    modules: list[str] = list(LINEAR_TYPES)  # candidate linear module types
    projection: Literal["paper", "exact"] = "paper"  # C = V Vᵀ / ‖V‖_F, or the orthogonal projector onto span(V)

    @model_validator(mode="after")
    def _one_rule(self):
        if self.n_layers is not None and "threshold" in self.model_fields_set:
            raise ValueError("give threshold or n_layers, not both")
        return self


# --- the projection --------------------------------------------------------------------------------------

def project(v: torch.Tensor, x: torch.Tensor, kind: str = "paper") -> torch.Tensor:
    """C x; `v` `[d_out, d_in]`, `x` `[d_out, k]` (ΔW, or a LoRA B). "paper": C = V Vᵀ / ‖V‖_F;
    "exact": C = U Uᵀ, U `[d_out, rank]` the left singular vectors of V above RANK_RTOL · σ_max."""
    if kind == "exact":
        u, s, _ = torch.linalg.svd(v, full_matrices=False)
        u = u[:, s > RANK_RTOL * s[0]]
        return u @ (u.T @ x)
    return v @ (v.T @ x) / v.norm()


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """cos of the flattened tensors; 0 when either is zero."""
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return 0.0
    return float((a.flatten() @ b.flatten()) / (na * nb))


def select(similarity: dict[str, float], params: SafeLoRAParams) -> list[str]:
    """Layer names to project: below the threshold, or the `n_layers` least similar (ties by name)."""
    if params.n_layers is not None:
        return sorted(similarity, key=lambda n: (similarity[n], n))[:params.n_layers]
    return sorted(n for n, s in similarity.items() if s < params.threshold)


@torch.no_grad()
def plan(deltas: dict[str, torch.Tensor], aligned: dict[str, torch.Tensor], unaligned: dict[str, torch.Tensor],
         params: SafeLoRAParams) -> tuple[dict[str, torch.Tensor], dict]:
    """V per layer, similarities, selection. Returns ({weight name: V (float64) of each layer to project},
    report). `deltas` holds only adapted layers (ΔW ≠ 0), keyed by weight name like the state dicts."""
    sims, vs, skipped, norms = {}, {}, {}, {}
    for name, dw in deltas.items():
        v = aligned[name].double() - unaligned[name].double()
        if v.norm() == 0:
            skipped[name] = "alignment did not change this weight (V = 0): no subspace to project onto"
            continue
        dw = dw.double()
        cdw = project(v, dw, params.projection)
        sims[name], vs[name] = cosine(cdw, dw), v
        norms[name] = (float(dw.norm()), float(cdw.norm()))
    chosen = select(sims, params)
    layers = [{"name": n, "similarity": sims[n], "projected": n in chosen, "delta_norm": norms[n][0],
               "projected_delta_norm": norms[n][1]} for n in sorted(sims)]
    report = {"projection": params.projection,
              "rule": "n_layers" if params.n_layers is not None else "threshold", "threshold": params.threshold,
              "n_layers": params.n_layers, "n_adapted": len(deltas), "n_candidates": len(sims),
              "n_projected": len(chosen), "projected": chosen, "layers": layers, "skipped": skipped}
    return {n: vs[n] for n in chosen}, report


# --- models in, repaired model out -----------------------------------------------------------------------

def _weights(ref: str, names: list[str], like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    model = fp32_required(load_model(ref)[0])
    params = dict(model.named_parameters())
    out = {}
    for n in names:
        if n not in params or params[n].shape != like[n].shape:
            raise ValueError(f"{ref}: has no weight {n} of shape {tuple(like[n].shape)}; the aligned and unaligned "
                             f"models must share the attacked model's architecture")
        out[n] = params[n].detach()
    return out


def repair(params: SafeLoRAParams, ctx: RepairContext) -> RepairResult:
    if (model_folder(ctx.attacked) / "adapter_config.json").exists():
        return _repair_adapter(params, ctx)
    return _repair_merged(params, ctx)


@torch.no_grad()
def _repair_merged(params: SafeLoRAParams, ctx: RepairContext) -> RepairResult:
    """ΔW = W_attacked − W_aligned; projected layers become W_aligned + C ΔW."""
    model, tok = load_model(ctx.attacked)
    model = fp32_required(model)
    weights = {f"{n}.weight": m.weight for n, m in linear_modules(model, params.modules).items()}
    aligned = _weights(ctx.aligned, list(weights), weights)
    deltas = {n: w.detach() - aligned[n] for n, w in weights.items() if not torch.equal(w.detach(), aligned[n])}
    if not deltas:
        raise ValueError(f"{ctx.attacked} equals the aligned model {ctx.aligned} in every {params.modules} weight: "
                         f"nothing to project (pass as --aligned the model it was fine-tuned from)")
    unaligned = _weights(ctx.unaligned, list(deltas), weights)
    to_project, report = plan(deltas, aligned, unaligned, params)
    for n, v in to_project.items():
        new = aligned[n].double() + project(v, deltas[n].double(), params.projection)
        weights[n].data = new.to(weights[n].dtype)
    return RepairResult(model, tok, {"mode": "merged", **report})


@torch.no_grad()
def _repair_adapter(params: SafeLoRAParams, ctx: RepairContext) -> RepairResult:
    """ΔW = s · B A from the adapter; projected layers get B ← C B; then the adapter is merged."""
    from peft import PeftModel  # deferred: peft

    folder = model_folder(ctx.attacked)
    base, tok = load_model(_base_reference(folder))
    base = fp32_required(base)
    peft_model = PeftModel.from_pretrained(base, folder, is_trainable=False)
    mods = {f"{strip_peft(n)}.weight": m for n, m in lora_modules(peft_model).items()
            if n.rsplit(".", 1)[-1] in set(params.modules)}
    if not mods:
        raise ValueError(f"{folder}: the adapter has no LoRA layers among {params.modules}")
    factors = {}
    for n, m in mods.items():
        a = next(iter(m.lora_B.keys()))
        factors[n] = (m.lora_B[a].weight, m.lora_A[a].weight, m.scaling[a])
    deltas = {n: s * (b.double() @ a.double()) for n, (b, a, s) in factors.items()}
    deltas = {n: d for n, d in deltas.items() if bool(d.any())}  # B = 0: this layer was not adapted
    aligned = _weights(ctx.aligned, list(deltas), deltas)
    unaligned = _weights(ctx.unaligned, list(deltas), deltas)
    to_project, report = plan(deltas, aligned, unaligned, params)
    for n, v in to_project.items():
        b = factors[n][0]
        b.data = project(v, b.double(), params.projection).to(b.dtype)
    return RepairResult(peft_model.merge_and_unload().eval(), tok, {"mode": "lora", **report})
