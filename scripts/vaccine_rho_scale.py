"""How large is Vaccine's ρ on this model? A sanity check before reading a Vaccine / T-Vaccine result.

Vaccine (workbench.defenses.alignment.vaccine) adds ε_l = ρ · g_l / ‖g‖ to every layer's hidden output, with ‖ε‖ = ρ
*jointly* over layers × batch × tokens × d_model. Whether ρ = 2 (the authors' Llama-2-7B value) is a gentle or a
violent perturbation depends on the model's hidden-state scale and on how the gradient concentrates, so for
batches of the alignment mix this measures, per ρ:

    relative size     ρ / ‖E‖            ‖E‖ = joint norm of the perturbed hidden states (same entries as ε)
    token share       max_t ‖ε[t]‖ / median_t ‖e[t]‖   the most-perturbed token against a typical token's norm
    loss increase     f(e + ε) − f(e)    what the perturbed pass (the one that trains) adds to the clean loss
    first order       ρ · ‖g‖            the linear prediction of that increase

Usage: python scripts/vaccine_rho_scale.py [--model smollm2-135m-instruct] [--rhos 0.5 2 8] [--batches 4]
       [--layers 0 1 ...] (T-Vaccine perturbs a subset) [--out rho_scale.json]
The docs' table: --rhos 0.5 2 8 32 --batches 3, once for the shipped model and once for the grid's SFT-aligned
model; records in results/vaccine-rho-scale/.
"""
from __future__ import annotations

import argparse
import json
import statistics

import torch

from workbench.data.alignment import alignment_samples
from workbench.data.chat import collate, encode
from workbench.machine import cpu_model
from workbench.models import load_model
from workbench.models.sites import sites_of
from workbench.presets import preset
from workbench.runs import git_hash, package_versions
from workbench.training.plugins import lm_loss


def measure(model, batch: dict, rhos: list[float], layers: list[int], site: str = "resid_post") -> dict:
    """One batch: hidden-state scale, gradient norm, and the perturbed loss for every ρ."""
    sites = sites_of(model)
    with sites.capture(model, site, layers) as outs:
        loss, _ = lm_loss(model, batch)
    grads = torch.autograd.grad(loss, [outs[layer] for layer in layers], allow_unused=True)
    grads = [torch.zeros_like(outs[layer]) if g is None else g.detach()
             for layer, g in zip(layers, grads, strict=False)]
    mask = batch["attention_mask"].bool()  # [batch, pos]: padding carries neither state nor gradient
    hidden = [outs[layer].detach()[mask] for layer in layers]  # each [tokens, d_model]
    g_norm = torch.sqrt(sum(g.float().pow(2).sum() for g in grads)).item()
    e_norm = torch.sqrt(sum(h.float().pow(2).sum() for h in hidden)).item()
    token_norms = torch.cat([h.float().norm(dim=-1) for h in hidden])  # [layers · tokens]
    g_token = torch.cat([g[mask].float().norm(dim=-1) for g in grads])
    row = {"clean_loss": loss.item(), "grad_norm": g_norm, "hidden_norm": e_norm,
           "median_token_norm": token_norms.median().item(), "n_entries": int(mask.sum()) * len(layers),
           "rhos": {}}
    with torch.no_grad():
        for rho in rhos:
            eps = {layer: rho * g / (g_norm + 1e-7) for layer, g in zip(layers, grads, strict=False)}
            with sites.add_to_outputs(model, site, eps):
                perturbed, _ = lm_loss(model, batch)
            row["rhos"][rho] = {"relative_size": rho / e_norm, "loss_increase": perturbed.item() - loss.item(),
                                "first_order": rho * g_norm,
                                "max_token_share": (rho * g_token.max() / g_norm).item() / row["median_token_norm"]}
    return row


def main(model_name: str, rhos: list[float], n_batches: int, layers: list[int] | None, seed: int = 0) -> dict:
    model, tok = load_model(model_name)
    model.eval()  # dropout off: the difference between passes is ε alone
    p = preset("full", seed)
    samples = alignment_samples(p.align, seed)[: n_batches * p.align.train.batch_size]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    enc = [encode(tok, s, p.align.train.max_len) for s in samples]
    n_layers = sites_of(model).n_layers
    layers = list(range(n_layers)) if layers is None else layers
    rows = [measure(model, collate(enc[i:i + p.align.train.batch_size], pad), rhos, layers)
            for i in range(0, len(enc), p.align.train.batch_size)]
    summary = {"model": model_name, "seed": seed, "git_hash": git_hash(), "cpu": cpu_model(),
               "versions": package_versions(), "layers": layers, "batches": len(rows), "per_batch": rows, "mean": {
        "clean_loss": statistics.mean(r["clean_loss"] for r in rows),
        "hidden_norm": statistics.mean(r["hidden_norm"] for r in rows),
        "median_token_norm": statistics.mean(r["median_token_norm"] for r in rows),
        "grad_norm": statistics.mean(r["grad_norm"] for r in rows),
        **{f"rho={rho:g}": {k: statistics.mean(r["rhos"][rho][k] for r in rows)
                            for k in ("relative_size", "loss_increase", "first_order", "max_token_share")}
           for rho in rhos}}}
    return summary


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--rhos", type=float, nargs="+", default=[0.5, 2.0, 8.0])
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--layers", type=int, nargs="+", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    res = main(args.model, args.rhos, args.batches, args.layers)
    m = res["mean"]
    print(f"{args.model}: clean loss {m['clean_loss']:.3f}, ‖E‖ {m['hidden_norm']:.0f} over "
          f"{res['per_batch'][0]['n_entries']} token-layer entries, median token norm {m['median_token_norm']:.1f}, "
          f"‖g‖ {m['grad_norm']:.3g}")
    print(f"{'rho':>6} {'rho/|E|':>10} {'max token share':>16} {'loss +':>9} {'rho*|g|':>9}")
    for rho in args.rhos:
        r = m[f"rho={rho:g}"]
        print(f"{rho:>6g} {r['relative_size']:>10.2e} {r['max_token_share']:>16.3f} {r['loss_increase']:>9.4f} "
              f"{r['first_order']:>9.4f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2)
