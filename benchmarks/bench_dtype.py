"""float32 vs bfloat16 side by side in one process: matmul peak, training tokens/s (our loop vs Hugging Face
`Trainer`), generation prompts/min (ours vs a plain `model.generate` loop), for each precision on the same model,
samples and prompts.

- matmul: best GFLOP/s of a 2048 × 2048 product in each dtype (`bench_training.measured_matmul_peak`). On a CPU
  without AMX-BF16 / AVX512-BF16 bf16 is emulated and slower than float32: `auto` then picks float32.
- training (LoRA and full): our loop with `TrainSpec.dtype` (bf16: float32 adapters on a bf16 base; autocast for
  full fine-tuning) vs Trainer as a practitioner configures it: `train_sampling_strategy="group_by_length"` (the
  `group_by_length=True` of transformers < 5) and `bf16=True` for bfloat16 (autocast, float32 weights); one epoch
  of `steps × batch` samples each, wall time end to end, best of `reps`.
- generation: `workbench.generation.generate` with `GenerationSpec.dtype` vs the practitioner's loop — the model
  cast with `.to(dtype)`, the prompts chat-formatted and left-padded by the tokenizer in the given order, batches
  of the same size, greedy, the same stop tokens and max new tokens; plus how many greedy answers bf16 and
  float32 share.

Every result file records the CPU model and its precision flags (`common.machine`). Usage:
`python -m benchmarks.bench_dtype --quick` (tiny-llama), `python -m benchmarks.bench_dtype` (SmolLM2-135M).
"""
from __future__ import annotations

import argparse
import copy

import torch

from benchmarks.bench_training import hf_trainer_run, measured_matmul_peak, ours_run, setup, train_flops
from benchmarks.common import bench_device, best_of, save
from workbench.config import GenerationSpec, TrainSpec
from workbench.data.chat import prompt_ids, stop_token_ids
from workbench.data.registry import load_split
from workbench.generation import generate
from workbench.machine import configure_threads
from workbench.models import load_model
from workbench.precision import auto_dtype, torch_dtype
from workbench.training.loop import train

DTYPES = ("float32", "bfloat16")


def hf_generate(model, tok, prompts: list[str], spec: GenerationSpec) -> list[str]:
    """The plain Hugging Face way: batches in the caller's order, left padding by the tokenizer, `model.generate`."""
    stops, answers = stop_token_ids(tok), []
    tok.padding_side = "left"
    with torch.inference_mode():
        for start in range(0, len(prompts), spec.batch_size):
            ids = [prompt_ids(tok, p) for p in prompts[start:start + spec.batch_size]]
            batch = tok.pad({"input_ids": ids}, padding=True, return_tensors="pt").to(model.device)
            out = model.generate(**batch, max_new_tokens=spec.max_new_tokens, do_sample=False, eos_token_id=stops,
                                 pad_token_id=tok.pad_token_id, temperature=None, top_p=None, top_k=None)
            width = batch["input_ids"].shape[1]
            answers += [tok.decode(row[width:], skip_special_tokens=True).strip() for row in out]
    return answers


def training_rows(base, tok, samples, spec: TrainSpec, reps: int) -> dict:
    """tokens/s of our loop and of Trainer (group_by_length, same precision) for one method, per dtype."""
    tokens = train_flops(base, tok, samples, spec)["tokens"]
    rows = {}
    for dtype in DTYPES:
        s = spec.model_copy(update={"dtype": dtype})
        train(copy.deepcopy(base), tok, samples[:s.batch_size], s.model_copy(update={"max_steps": 1}),
              progress=False)  # warm-up
        ours = min(ours_run(copy.deepcopy(base), tok, samples, s)["seconds"] for _ in range(reps))
        hf = min(hf_trainer_run(copy.deepcopy(base), tok, samples, s, group_by_length=True,
                                bf16=dtype == "bfloat16")["seconds"] for _ in range(reps))
        rows[dtype] = {"ours_seconds": round(ours, 3), "trainer_seconds": round(hf, 3),
                       "ours_tokens_per_s": round(tokens / ours, 1), "trainer_tokens_per_s": round(tokens / hf, 1),
                       "ours_vs_trainer": round(hf / ours, 3)}
    return {"tokens": tokens, **rows}


def generation_rows(model, tok, prompts: list[str], spec: GenerationSpec, reps: int) -> dict:
    rows, answers = {}, {}
    for dtype in DTYPES:
        s = spec.model_copy(update={"dtype": dtype})
        generate(model, tok, prompts[:2], s, progress=False)  # warm-up
        ours, answers[dtype] = best_of(lambda s=s: generate(model, tok, prompts, s, progress=False), reps, warmup=0)
        cast = copy.deepcopy(model).to(torch_dtype(dtype))
        hf, _ = best_of(lambda cast=cast: hf_generate(cast, tok, prompts, spec), reps, warmup=1)
        n = len(prompts)
        rows[dtype] = {"ours_seconds": round(ours, 3), "hf_seconds": round(hf, 3),
                       "ours_prompts_per_minute": round(60 * n / ours, 1),
                       "hf_prompts_per_minute": round(60 * n / hf, 1), "ours_vs_hf": round(hf / ours, 3)}
    same = sum(a == b for a, b in zip(answers["float32"], answers["bfloat16"], strict=True)) / len(prompts)
    return {**rows, "greedy_answers_identical_bf16_vs_fp32": same}


def main(quick: bool, model_name: str | None = None, reps: int = 1) -> None:
    """`reps`: best of this many timed runs of each variant (emulated bf16 is slow: one by default)."""
    configure_threads()  # WORKBENCH_THREADS / the cores this process may use: oversubscribed threads swamp the ratios
    device = bench_device()
    # best of 2 (plus a warm-up): an emulated bf16 2048² product takes about a minute on a CPU without bf16 units
    matmul = {d: round(measured_matmul_peak(device, sizes=(2048,), reps=2, dtype=torch_dtype(d)) / 1e9, 1)
              for d in DTYPES}
    training = {}
    for method in ("lora", "full"):
        name, samples, spec = setup(quick, method)
        name = model_name or name
        base, tok = load_model(name, device=device)
        training[method] = training_rows(base, tok, samples, spec, reps)
    model, tok = load_model(name, device=device)
    n = 16 if quick else 50
    prompts = [s.prompt for s in load_split("advbench", "eval")[:n]]
    gen_spec = GenerationSpec(max_new_tokens=16 if quick else 32, batch_size=25)
    generation = generation_rows(model, tok, prompts, gen_spec, reps)

    headline = {f"matmul 2048² GFLOP/s {d}": matmul[d] for d in DTYPES}
    headline["auto resolves to"] = auto_dtype(device=device)
    for method, r in training.items():
        for d in DTYPES:
            headline[f"{method}: tokens/s ours (Trainer) {d}"] = \
                f"{r[d]['ours_tokens_per_s']:.0f} ({r[d]['trainer_tokens_per_s']:.0f})"
        headline[f"{method}: ours bf16 vs fp32 tokens/s"] = \
            f"{r['bfloat16']['ours_tokens_per_s'] / r['float32']['ours_tokens_per_s']:.2f}×"
    for d in DTYPES:
        headline[f"generation prompts/min ours (HF) {d}"] = \
            f"{generation[d]['ours_prompts_per_minute']:.0f} ({generation[d]['hf_prompts_per_minute']:.0f})"
    headline["greedy answers identical bf16 vs fp32"] = f"{generation['greedy_answers_identical_bf16_vs_fp32']:.0%}"
    save("dtype", {"quick": quick, "model": name, "reps": reps, "steps": spec.max_steps,
                   "batch_size": spec.batch_size, "max_len": spec.max_len, "samples": len(samples),
                   "prompts": n, "max_new_tokens": gen_spec.max_new_tokens,
                   "results": {"matmul_gflops": matmul, "training": training, "generation": generation},
                   "note": "Trainer: train_sampling_strategy=group_by_length, bf16=True for bfloat16 (autocast, "
                           "float32 weights); ours: TrainSpec.dtype (LoRA: bf16 frozen base, float32 adapters; "
                           "full: autocast). HF generation: model.to(dtype), tokenizer left padding, caller's order."},
         headline, goals={"lora: ours bf16 vs fp32 tokens/s": "> 1× on a bf16 CPU (AMX / AVX512-BF16)"})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny-llama, short runs")
    ap.add_argument("--model", default=None, help="another registered model or folder (default: by --quick)")
    ap.add_argument("--reps", type=int, default=1, help="best of this many timed runs of each variant")
    a = ap.parse_args()
    main(a.quick, a.model, a.reps)
