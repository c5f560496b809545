"""Evaluation throughput: batched left-padded generation vs one prompt at a time (same prompts, greedy),
and HS evaluations per minute (generation + moderation judge + coherence on N held-out harmful prompts,
through `evaluation.harness.evaluate`; the judge is loaded once beforehand and timed separately)."""
from __future__ import annotations

import argparse

from benchmarks.common import bench_device, bench_model, best_of, save, timer
from workbench.config import EvalSpec, GenerationSpec
from workbench.data.registry import load_split
from workbench.evaluation.harness import evaluate
from workbench.evaluation.judge import load_judge
from workbench.generation import generate
from workbench.models import load_model


def main(quick: bool) -> None:
    name = bench_model(quick)
    model, tok = load_model(name, device=bench_device())
    n = 16 if quick else 50
    prompts = [s.prompt for s in load_split("advbench", "eval")[:n]]
    spec = GenerationSpec(max_new_tokens=16 if quick else 32, batch_size=25)
    reps = 5 if quick else 1  # best of reps: tiny runs are short enough for other load to swamp one
    generate(model, tok, prompts[:2], spec, progress=False)  # warm-up: first-call allocations
    batched, a = best_of(lambda: generate(model, tok, prompts, spec, progress=False), reps, warmup=0)
    one = spec.model_copy(update={"batch_size": 1})
    single, b = best_of(lambda: generate(model, tok, prompts, one, progress=False), reps, warmup=0)
    agree = sum(x == y for x, y in zip(a, b, strict=False)) / len(a)

    embedder = "hashing" if quick else "minilm"
    with timer() as judge_load:
        load_judge(embedder, progress=False)
    ev_spec = EvalSpec(n_harmful=n, n_benign=0, task=None, n_task=0, judge=True, judge_embedder=embedder,
                       generation=spec)
    hs, ev = best_of(lambda: evaluate(model, tok, ev_spec, progress=False), reps, warmup=0)
    per_min = 60 * n / hs
    results = {"batched_seconds": round(batched, 3), "single_seconds": round(single, 3),
               "speedup_batched_vs_single": round(single / batched, 2),
               "prompts_per_minute_batched": round(60 * n / batched, 1),
               "prompts_per_minute_single": round(60 * n / single, 1),
               "greedy_answers_identical_fraction": agree,
               "judge": embedder, "judge_load_seconds": round(judge_load["seconds"], 2),
               "hs_eval_seconds": round(hs, 3), "hs_evals_per_minute": round(per_min, 1),
               "hs_eval_judge_share": round(1 - batched / hs, 3),
               "hs": ev.metrics["hs"]["value"]}
    headline = {"batched vs one-at-a-time generation": f"{results['speedup_batched_vs_single']}×",
                f"prompts/min batched ({spec.max_new_tokens} tokens)": results["prompts_per_minute_batched"],
                f"HS evaluations/min ({embedder} judge)": results["hs_evals_per_minute"],
                "greedy answers identical batched vs single": f"{agree:.0%}"}
    save("generation", {"quick": quick, "model": name, "prompts": n, "max_new_tokens": spec.max_new_tokens,
                        "batch_size": spec.batch_size, "reps": reps, "results": results},
         headline, goals={"batched vs one-at-a-time generation": "> 1×"})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    main(ap.parse_args().quick)
