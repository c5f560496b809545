"""How much of a plain harmful fine-tuning attack lives in SaLoRA's safety subspace?

SaLoRA (workbench.defenses.finetune.salora) only blocks the part of the LoRA update ΔW that changes a layer's
output inside span(U), U = the top-k output directions of the aligned model on safety data. If the plain
attack's update barely touches span(U), SaLoRA has nothing to remove and trains like plain LoRA. This measures,
for the *plain* attack's merged update ΔW = W_attacked − W_aligned of every LoRA-targeted projection:

    weight share   ‖Uᵀ ΔW‖²_F / ‖ΔW‖²_F                   (what the projection would remove from the update)
    output share   Σ_t ‖Uᵀ ΔW x_t‖² / Σ_t ‖ΔW x_t‖²        on the safety inputs x_t (what it protects there)
    chance         k / d_out                                (the share of a random direction)

for k in --ranks, averaged over modules (and per module type). Usage:
    python scripts/salora_subspace.py ALIGNED_RUN ATTACKED_RUN [--ranks 8 32 128] [--n-safety 64]
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict

import torch

from workbench.data.chat import collate, encode
from workbench.defenses.finetune.common import refusal_samples
from workbench.defenses.finetune.salora import top_directions
from workbench.models import load_model


@torch.no_grad()
def main(aligned: str, attacked: str, ranks: list[int], n_safety: int, targets: list[str]) -> dict:
    model, tok = load_model(aligned)
    other, _ = load_model(attacked)
    model.eval()
    modules = {n: m for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in targets}
    other_w = {n: m.weight for n, m in other.named_modules() if n in modules}
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    enc = [encode(tok, s, 256) for s in refusal_samples(n_safety, 0)]
    grams, inputs, current = {}, defaultdict(list), {}

    def make(name):
        def hook(module, args, output):
            mask = current["mask"]
            y = output[mask].double()
            grams[name] = grams.get(name, 0) + y.T @ y
            inputs[name].append(args[0][mask].double())
        return hook

    handles = [m.register_forward_hook(make(n)) for n, m in modules.items()]
    for i in range(0, len(enc), 8):
        b = collate(enc[i:i + 8], pad)
        current["mask"] = b["attention_mask"].bool()
        model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False)
    for h in handles:
        h.remove()
    rows = defaultdict(lambda: defaultdict(list))
    for name, m in modules.items():
        delta = (other_w[name].double() - m.weight.double())  # [d_out, d_in]
        x = torch.cat(inputs[name])  # [tokens, d_in]
        dy = x @ delta.T  # [tokens, d_out]
        kind = name.rsplit(".", 1)[-1]
        for k in ranks:
            U = top_directions(grams[name], k)
            w_share = float((U.T @ delta).pow(2).sum() / delta.pow(2).sum().clamp_min(1e-30))
            o_share = float((dy @ U).pow(2).sum() / dy.pow(2).sum().clamp_min(1e-30))
            for key in ("all", kind):
                rows[key][f"weight_share_k{k}"].append(w_share)
                rows[key][f"output_share_k{k}"].append(o_share)
                rows[key][f"chance_k{k}"].append(min(k, delta.shape[0]) / delta.shape[0])
    out = {key: {m: round(sum(v) / len(v), 4) for m, v in d.items()} for key, d in rows.items()}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("aligned")
    ap.add_argument("attacked")
    ap.add_argument("--ranks", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--n-safety", type=int, default=64)
    ap.add_argument("--targets", nargs="+", default=["q_proj", "k_proj", "v_proj", "o_proj"])
    a = ap.parse_args()
    main(a.aligned, a.attacked, a.ranks, a.n_safety, a.targets)
