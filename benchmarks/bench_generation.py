"""Evaluation throughput: batched left-padded generation vs one prompt at a time, and harmful-prompt
evaluations per minute."""
from __future__ import annotations

import argparse

from benchmarks.common import bench_model, save, timer
from workbench.config import GenerationSpec
from workbench.data.registry import load_split
from workbench.generation import generate
from workbench.models import load_model


def main(quick: bool) -> None:
    name = bench_model(quick)
    model, tok = load_model(name)
    prompts = [s.prompt for s in load_split("advbench", "eval")[: 16 if quick else 50]]
    spec = GenerationSpec(max_new_tokens=16 if quick else 32, batch_size=25)
    with timer() as batched:
        a = generate(model, tok, prompts, spec, progress=False)
    with timer() as single:
        b = generate(model, tok, prompts, spec.model_copy(update={"batch_size": 1}), progress=False)
    agree = sum(x == y for x, y in zip(a, b)) / len(a)
    save("generation", {"quick": quick, "model": name, "prompts": len(prompts), "max_new_tokens": spec.max_new_tokens,
                        "batched_seconds": round(batched["seconds"], 2), "single_seconds": round(single["seconds"], 2),
                        "speedup_batched_vs_single": round(single["seconds"] / batched["seconds"], 2),
                        "prompts_per_minute_batched": round(60 * len(prompts) / batched["seconds"], 1),
                        "greedy_answers_identical_fraction": agree})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    main(ap.parse_args().quick)
