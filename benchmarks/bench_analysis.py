"""Analysis overhead: activation extraction (probing), a patching sweep and one VISAGE landscape point,
each against a bare forward pass of the HF model over the same prompts (goal ≤ 2× for cached extraction).

Every timing is the best of a few repetitions after a warm-up, measured side by side in one process:
    bare forward      HF model, left-padded prompt batches, logits at the last position only
    bridge forward    the same through the TransformerBridge copy (the analyses' hook layer)
    extraction        resid_post of every layer at the last position (`probing.last_token_features`)
    patching          within-model harmful → harmless resid patching of every layer (L + 2 passes),
                      also per equivalent forward pass
    landscape point   θ₀ + α·d written in place, safety measured (proxy: one forward; keyword: greedy
                      generation, compared with bare generation), θ₀ restored
"""
from __future__ import annotations

import argparse

from benchmarks.common import bench_device, bench_model, best_of, save, timer
from workbench.analysis import common, patching, probing
from workbench.analysis.landscape import perturbed, random_direction
from workbench.analysis.safety_metric import SafetyProbe
from workbench.config import GenerationSpec
from workbench.generation import generate
from workbench.models import boot_bridge, load_model


def main(quick: bool) -> None:
    name = bench_model(quick)
    model, tok = load_model(name, device=bench_device())
    n, reps, bs, new_tokens = (8, 2, 16, 8) if quick else (32, 3, 16, 8)
    harmful, harmless = common.prompt_sets(n, "eval", tok, max_prompt_tokens=96)
    both = common.encode_prompts(tok, harmful + harmless)
    harm, safe = common.encode_prompts(tok, harmful), common.encode_prompts(tok, harmless)

    bare, _ = best_of(lambda: common.last_logits(model, both, bs), reps)
    bare_harm, _ = best_of(lambda: common.last_logits(model, harm, bs), reps)
    with timer() as boot:
        bridge = boot_bridge(model, tok)
    bridge_fwd, _ = best_of(lambda: common.last_logits(bridge, both, bs), reps)
    extract, feats = best_of(lambda: probing.last_token_features(bridge, both, "resid_post", bs), reps)

    L = bridge.cfg.n_layers
    tokens = common.refusal_tokens(tok)
    patch, _ = best_of(lambda: patching.patch_scores(bridge, harm, bridge, safe, tokens, ["resid"], 6, 6,
                                                     batch_size=bs), max(1, reps - 1))
    passes = (L + 2) / 2  # source + target + L patched passes over n prompts; the bare pass covers 2n

    proxy = SafetyProbe(tok, harmful, metric="proxy", batch_size=bs)
    keyword = SafetyProbe(tok, harmful, metric="keyword", max_new_tokens=new_tokens, batch_size=bs)
    d = random_direction(model, seed=0)

    def point(probe):
        with perturbed(model, [d], 0.5):
            return probe(model)

    point_proxy, _ = best_of(lambda: point(proxy), reps)
    point_keyword, _ = best_of(lambda: point(keyword), reps)
    spec = GenerationSpec(max_new_tokens=new_tokens, batch_size=bs)
    bare_gen, _ = best_of(lambda: generate(model, tok, harmful, spec, progress=False), reps)

    r = lambda a, b: round(a / b, 2)  # noqa: E731
    results = {
        "bare_forward_seconds": round(bare, 4), "bridge_boot_seconds": round(boot["seconds"], 3),
        "bridge_forward_seconds": round(bridge_fwd, 4), "bridge_forward_vs_bare": r(bridge_fwd, bare),
        "extraction_seconds": round(extract, 4), "extraction_vs_bare": r(extract, bare),
        "extraction_shape": list(feats.shape),
        "patching_seconds": round(patch, 3), "patching_forward_passes": L + 2,
        "patching_vs_bare": r(patch, bare), "patching_per_pass_vs_bare": r(patch, bare * passes),
        "landscape_point_proxy_seconds": round(point_proxy, 4),
        "landscape_point_proxy_vs_bare": r(point_proxy, bare_harm),
        "landscape_point_keyword_seconds": round(point_keyword, 4),
        "bare_generation_seconds": round(bare_gen, 4),
        "landscape_point_keyword_vs_bare_generation": r(point_keyword, bare_gen),
    }
    headline = {"probe extraction (cached) vs bare forward": f"{results['extraction_vs_bare']}×",
                "bridge forward vs bare forward": f"{results['bridge_forward_vs_bare']}×",
                f"patching sweep ({L + 2} passes) per pass vs bare": f"{results['patching_per_pass_vs_bare']}×",
                "1D landscape point (proxy) vs bare forward": f"{results['landscape_point_proxy_vs_bare']}×",
                "1D landscape point (keyword) vs bare generation":
                    f"{results['landscape_point_keyword_vs_bare_generation']}×",
                f"bare forward, {2 * n} prompts": f"{bare:.3f} s"}
    save("analysis", {"quick": quick, "model": name, "prompts_per_class": n, "layers": L, "batch_size": bs,
                      "max_new_tokens": new_tokens, "reps": reps, "results": results},
         headline, goals={"probe extraction (cached) vs bare forward": "≤ 2×"})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    main(ap.parse_args().quick)
