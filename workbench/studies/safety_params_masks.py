"""Top-k % masks of per-weight scores, nested over a grid of k, and how masks compare: Jaccard overall and by
(layer, module type), each layer's share of a mask, and a mask's energy inside SafeLoRA's alignment subspace.

Nesting. `levels(scores, ks)` ranks every weight once (a stable descending sort, ties broken by position) and
records the first k of the grid whose top set holds it; the mask at k_i is `level <= i`. So a larger k prunes a
superset of a smaller one by construction, whatever the ties (plain `topk` may break ties differently per k).
`group="matrix"`: the top k % of every matrix (the same count in each, as the Wanda analysis and Antidote prune);
`group="global"`: the top k % of all scored weights together (the criterion decides where they fall).

Subspace. SafeLoRA (`defenses.post.safelora`) treats V = W_aligned − W_base of each matrix as the alignment
subspace and projects fine-tuning updates onto span(V) from the left (`[d_out]` side). Pruning a mask M changes
the weights by P = M ⊙ W. Per matrix with V ≠ 0 we measure the share of that change inside span(V),
‖U Uᵀ P‖²_F / ‖P‖²_F (U: the exact orthonormal basis, as `safelora.project(..., "exact")` uses), against the
same share for a uniformly random subspace of the same rank r, whose expectation is exactly r / d_out for any P.
A criterion that locates the weights alignment wrote has a share far above the random one; the study reports both
per layer (energy-pooled over the layer's matrices).

Shapes: scores and masks `[d_out, d_in]` per parameter name; levels uint8 (255 = in no top set).
"""
from __future__ import annotations

import math

import torch

from workbench.defenses.post.safelora import RANK_RTOL
from workbench.models.sites import layer_of

NONE = 255  # level of a weight in no top set of the grid


def _counts(numel: int, ks: list[float]) -> list[int]:
    return [round(k / 100 * numel) for k in ks]


def levels(scores: dict[str, torch.Tensor], ks: list[float], group: str = "matrix") -> dict[str, torch.Tensor]:
    """uint8 tensors like the scores: the index of the smallest k (percent, ascending) whose top set holds the
    weight, NONE otherwise."""
    if list(ks) != sorted(ks) or len(ks) >= NONE:
        raise ValueError(f"k grid must be ascending (and shorter than {NONE}): {ks}")
    if group == "matrix":
        return {n: _levels_flat(s.reshape(-1), ks).view(s.shape) for n, s in scores.items()}
    if group != "global":
        raise ValueError(f"group must be 'matrix' or 'global', got {group!r}")
    names = list(scores)
    flat = _levels_flat(torch.cat([scores[n].reshape(-1).float() for n in names]), ks)
    out, start = {}, 0
    for n in names:
        size = scores[n].numel()
        out[n] = flat[start:start + size].view(scores[n].shape)
        start += size
    return out


def _levels_flat(score: torch.Tensor, ks: list[float]) -> torch.Tensor:
    order = torch.sort(score.float(), descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    out = torch.full((score.numel(),), NONE, dtype=torch.uint8)
    for i, count in reversed(list(enumerate(_counts(score.numel(), ks)))):
        out[rank < count] = i
    return out


def mask_at(lv: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    """The bool mask of grid index `i` from `levels`."""
    return {n: t <= i for n, t in lv.items()}


def top_masks(scores: dict[str, torch.Tensor], ks: list[float], group: str = "matrix") -> list[dict[str, torch.Tensor]]:
    """The nested top-k % masks of `scores`, one per k of the (ascending) grid."""
    lv = levels(scores, ks, group)
    return [mask_at(lv, i) for i in range(len(ks))]


def cell_of(name: str) -> tuple[int, str]:
    """(decoder layer, module type) of a weight name: "model.layers.3.mlp.up_proj.weight" -> (3, "up_proj")."""
    layer = layer_of(name)
    return (-1 if layer is None else layer), name.rsplit(".", 2)[-2]


def cells(names: list[str], module_order: tuple[str, ...]) -> tuple[list[int], list[str]]:
    """Sorted layers and module types (in `module_order`, then any others) of weight names."""
    found = [cell_of(n) for n in names]
    layers = sorted({c[0] for c in found})
    types = [t for t in module_order if any(c[1] == t for c in found)]
    types += sorted({c[1] for c in found} - set(types))
    return layers, types


def jaccard(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], layers: list[int], types: list[str]
            ) -> tuple[float, torch.Tensor]:
    """(overall Jaccard |A ∩ B| / |A ∪ B| over all weights, `[n_layers, n_types]` Jaccard per matrix; NaN where
    both masks are empty)."""
    per = torch.full((len(layers), len(types)), float("nan"))
    inter = union = 0
    for n in a:
        i, u = int((a[n] & b[n]).sum()), int((a[n] | b[n]).sum())
        inter, union = inter + i, union + u
        layer, t = cell_of(n)
        per[layers.index(layer), types.index(t)] = i / u if u else float("nan")
    return (inter / union if union else float("nan")), per


def layer_shares(mask: dict[str, torch.Tensor], layers: list[int]) -> torch.Tensor:
    """`[n_layers]`: the share of the mask's weights in each layer (sums to 1 over layers; 0s for an empty mask)."""
    counts = torch.zeros(len(layers))
    for n, m in mask.items():
        counts[layers.index(cell_of(n)[0])] += int(m.sum())
    total = counts.sum()
    return counts / total if total > 0 else counts


def top_layers(mask: dict[str, torch.Tensor], layers: list[int], n: int) -> list[int]:
    """The `n` layers holding the largest share of `mask` (ties: lower layer first), sorted."""
    share = layer_shares(mask, layers)
    order = sorted(range(len(layers)), key=lambda i: (-float(share[i]), layers[i]))
    return sorted(layers[i] for i in order[:n])


# ------------------------------------------------------------------------------------------------- subspace


def subspace_bases(aligned: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """{weight name: U} for each matrix the alignment changed: U `[d_out, r]` an orthonormal basis of span(V),
    V = W_aligned − W_base (singular values above RANK_RTOL · σ_max, as SafeLoRA's exact projection)."""
    out = {}
    for n in aligned:
        v = aligned[n].double() - base[n].double()
        if not bool(v.any()):
            continue
        u, s, _ = torch.linalg.svd(v, full_matrices=False)
        out[n] = u[:, s > RANK_RTOL * s[0]]
    return out


def subspace_share(mask: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], bases: dict[str, torch.Tensor],
                   layers: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(`[n_layers]` share of ‖P‖² inside span(V), `[n_layers]` its expectation inside a uniformly random subspace
    of the same rank), P = mask ⊙ W pooled over each layer's matrices that have a subspace; NaN for a layer without
    one (or an empty P). A uniformly random r-dimensional subspace of R^d_out holds r / d_out of any ‖P‖² in
    expectation, so the baseline is exact, not one noisy draw."""
    inside, rand, total = (torch.zeros(len(layers), dtype=torch.float64) for _ in range(3))
    for n, u in bases.items():
        p = torch.where(mask[n], weights[n], torch.zeros_like(weights[n])).double()
        i = layers.index(cell_of(n)[0])
        energy = p.square().sum()
        total[i] += energy
        inside[i] += (u.T @ p).square().sum()  # ‖U Uᵀ P‖² = ‖Uᵀ P‖² for orthonormal U
        rand[i] += energy * u.shape[1] / u.shape[0]
    nan = torch.full_like(total, math.nan)
    share = torch.where(total > 0, inside / total.clamp_min(1e-300), nan)
    share_r = torch.where(total > 0, rand / total.clamp_min(1e-300), nan)
    return share.float(), share_r.float()
