"""Weight importance and pruning on a model's linear sublayers: Wanda scores, top fractions, Wei et al.'s set
difference, and exact prune / restore. Shared by the Wanda analysis (`workbench.analysis.wanda`, which documents
the method) and the Antidote repair (`workbench.defenses.post.antidote`).

Scores and masks are per parameter name `<module>.weight`, `[d_out, d_in]` like the weight; the scored modules
are linear sublayers of the decoder layers by type (`workbench.models.sites.LINEAR_TYPES` by default).

Precision: scores are computed in float32 whatever precision the model arrives in (`precision.fp32_required`): they
multiply weights by activation norms and are ranked across matrices, where bf16's 3 digits reorder near-ties.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from workbench.models.sites import LINEAR_TYPES, linear_modules
from workbench.precision import fp32_required

Mask = dict[str, torch.Tensor]  # parameter name -> bool tensor of the parameter's shape


# --- scores ------------------------------------------------------------------------------------------

def _token_weights(batch: dict, tokens: str) -> torch.Tensor:
    if tokens == "answer":
        return (batch["labels"] != -100).float()
    return batch["attention_mask"].float()


@torch.no_grad()
def input_norms(model, batches, modules=LINEAR_TYPES, tokens: str = "all", progress: bool = False
                ) -> dict[str, torch.Tensor]:
    """‖X_j‖₂ per input feature of each target linear, over the chosen tokens: `[d_in]` per module name."""
    linears = linear_modules(model, modules)
    device = next(model.parameters()).device
    sums = {n: torch.zeros(m.in_features, dtype=torch.float64, device=device) for n, m in linears.items()}
    current: dict[str, torch.Tensor] = {}

    def hook(name):
        def fn(module, args):
            x = args[0].double()  # [batch, pos, d_in]
            sums[name] += (x.square() * current["w"][..., None]).sum((0, 1))
        return fn

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in linears.items()]
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(batches, desc="wanda activations", disable=not progress, dynamic_ncols=True):
            batch = {k: v.to(device) for k, v in batch.items()}
            current["w"] = _token_weights(batch, tokens).double()
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                  logits_to_keep=1)  # only the activations matter: skip the LM head on all positions
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {n: s.sqrt().float() for n, s in sums.items()}


def wanda_scores(model, batches, modules=LINEAR_TYPES, tokens: str = "all", progress: bool = False
                 ) -> dict[str, torch.Tensor]:
    """S = |W| · ‖X‖₂ (broadcast over output rows), keyed by parameter name `<module>.weight`; in float32
    (`model` is upcast in place if it is not)."""
    model = fp32_required(model)
    norms = input_norms(model, batches, modules, tokens, progress)
    linears = linear_modules(model, modules)
    return {f"{n}.weight": linears[n].weight.detach().abs().float() * norms[n][None, :] for n in linears}


# --- select ------------------------------------------------------------------------------------------

def top_fraction(score: torch.Tensor, frac: float, group: str = "matrix") -> torch.Tensor:
    """Bool mask of the top `frac` of `score` `[d_out, d_in]`: k = round(frac · size) entries of the whole
    matrix ("matrix") or of each output row ("row")."""
    mask = torch.zeros_like(score, dtype=torch.bool)
    if group == "row":
        k = round(frac * score.shape[1])
        if k:
            mask.scatter_(1, score.topk(k, dim=1).indices, True)
        return mask
    k = round(frac * score.numel())
    if k:
        mask.view(-1)[score.flatten().topk(k).indices] = True
    return mask


def set_difference(safety: dict[str, torch.Tensor], utility: dict[str, torch.Tensor], q: float, p: float,
                   group: str = "matrix") -> Mask:
    """Wei et al.'s S(p, q) = top-q(safety) \\ top-p(utility), per tensor."""
    return {n: top_fraction(safety[n], q, group) & ~top_fraction(utility[n], p, group) for n in safety}


def random_mask_like(mask: Mask, seed: int = 0) -> Mask:
    """A uniformly random mask with the same number of entries in each of the same tensors."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = {}
    for n, m in mask.items():
        k = int(m.sum())
        r = torch.zeros(m.numel(), dtype=torch.bool)
        r[torch.randperm(m.numel(), generator=gen)[:k]] = True
        out[n] = r.view(m.shape).to(m.device)
    return out


# --- prune -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PruneRecord:
    """What `prune` zeroed: flat int64 indices and the original values, per parameter name."""

    indices: dict[str, torch.Tensor]
    values: dict[str, torch.Tensor]

    @property
    def n_zeroed(self) -> int:
        return sum(int(i.numel()) for i in self.indices.values())

    @torch.no_grad()
    def restore(self, model) -> None:
        """Write the original values back (exactly)."""
        params = dict(model.named_parameters())
        for n, idx in self.indices.items():
            flat = params[n].data.view(-1)
            flat[idx.to(flat.device)] = self.values[n].to(flat.device, flat.dtype)

    def save(self, path: str | Path) -> Path:
        """One safetensors file: `<name>::indices`, `<name>::values` per tensor."""
        from safetensors.torch import save_file  # deferred: safetensors

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for n in self.indices:
            tensors[f"{n}::indices"] = self.indices[n].cpu().contiguous()
            tensors[f"{n}::values"] = self.values[n].cpu().contiguous()
        save_file(tensors, str(path))
        return path

    @classmethod
    def load(cls, path: str | Path) -> PruneRecord:
        from safetensors.torch import load_file  # deferred: safetensors

        t = load_file(str(path))
        names = sorted({k.rsplit("::", 1)[0] for k in t})
        return cls(indices={n: t[f"{n}::indices"] for n in names}, values={n: t[f"{n}::values"] for n in names})


@torch.no_grad()
def prune(model, mask: Mask) -> PruneRecord:
    """Zero exactly the entries of each named parameter where `mask` is True, in place."""
    params = dict(model.named_parameters())
    unknown = [n for n in mask if n not in params]
    if unknown:
        raise ValueError(f"mask names parameters the model lacks: {unknown[:3]}")
    indices, values = {}, {}
    for n, m in mask.items():
        p = params[n]
        if m.shape != p.shape:
            raise ValueError(f"mask for {n} has shape {tuple(m.shape)}, parameter has {tuple(p.shape)}")
        flat = p.data.view(-1)
        idx = m.to(flat.device).reshape(-1).nonzero().squeeze(1)
        indices[n] = idx.cpu()
        values[n] = flat[idx].detach().cpu().clone()
        flat[idx] = 0
    return PruneRecord(indices=indices, values=values)


def mask_from_indices(indices: dict[str, torch.Tensor], model) -> Mask:
    """Bool masks of the parameters' shapes from flat indices (as saved in `mask.safetensors`)."""
    params = dict(model.named_parameters())
    out = {}
    for n, idx in indices.items():
        m = torch.zeros(params[n].numel(), dtype=torch.bool)
        m[idx] = True
        out[n] = m.view(params[n].shape)
    return out
