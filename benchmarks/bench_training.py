"""Training throughput: our loop vs Hugging Face `Trainer` (+ peft for LoRA), full and LoRA, on the same
model, samples, batch size, sequence length and steps; tokens/s ratio (goal ≥ 1.0), peak memory of each,
and the loop's achieved matmul FLOP/s against a matmul peak measured on the same device (MFU).

Both see exactly `steps × batch` samples (one epoch), so they train on the same answer tokens; ours
buckets them by length (less padding), Trainer draws them in random order. Wall time is end to end for
both: encoding, LoRA wrapping, optimizer set-up and the steps; a one-step warm-up runs first. Peak memory
is measured in a fresh child process per variant (`--child`), where no earlier run's freed memory can be
reused and hide it.
"""
from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys

import torch

from benchmarks.common import bench_device, bench_model, peak_memory, save, timer
from workbench.config import TrainSpec
from workbench.data.chat import Encoded, collate, encode
from workbench.data.registry import load_split
from workbench.models import load_model
from workbench.precision import matmul_seconds
from workbench.training.loop import _micro_batches, train, wrap_lora


def measured_matmul_peak(device: str, sizes=(512, 1024, 2048), reps: int = 10, dtype=torch.float32) -> float:
    """Best FLOP/s of square `dtype` matmuls on `device` (what the training matmuls could reach): the
    fastest single product of `reps` per size, so a moment of other load on the machine cannot lower it."""
    return max(2 * n**3 / matmul_seconds(n, dtype, reps, device) for n in sizes)


def train_flops(model, tok, samples, spec: TrainSpec) -> dict:
    """Matmul FLOPs our loop executes: linear layers (LM head included) + attention scores/values, over the
    exact batches it draws. Forward 2·N per token; backward 4·N for full fine-tuning, 2·N for LoRA (input
    gradients only: base weights are frozen); attention backward 2× forward either way."""
    cfg = model.config
    n_linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    d_attn = cfg.num_attention_heads * getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
    enc = [encode(tok, s, spec.max_len) for s in samples]
    stream = _micro_batches(enc, spec, tok.pad_token_id)
    linear = attn = real = padded = 0
    for _ in range(spec.max_steps * spec.grad_accum):
        b = next(stream)
        B, S = b["input_ids"].shape
        padded += B * S
        real += int(b["attention_mask"].sum())
        linear += 2 * n_linear * B * S
        attn += 4 * cfg.num_hidden_layers * d_attn * B * S * S
    total = linear * (3 if spec.method == "full" else 2) + 3 * attn
    return {"flops": total, "flops_real_tokens": total * real / padded, "tokens": real, "padded_tokens": padded}


def hf_trainer_run(model, tok, samples, spec: TrainSpec, group_by_length: bool = False, bf16: bool = False) -> dict:
    """Trainer as a practitioner configures it; `group_by_length` buckets batches by length (what our loop does),
    `bf16` is Trainer's mixed precision (autocast, float32 weights)."""
    from transformers import Trainer, TrainingArguments

    with timer() as wall, peak_memory() as mem:
        if spec.method == "lora":
            model = wrap_lora(model, spec)
        enc = [encode(tok, s, spec.max_len) for s in samples]

        class DS(torch.utils.data.Dataset):
            def __len__(self):
                return len(enc)

            def __getitem__(self, i):  # a dict with input_ids: what Trainer's length-grouped sampler measures
                return {"input_ids": enc[i].input_ids, "labels": enc[i].labels}

        args = TrainingArguments(output_dir="/tmp/wb-bench-trainer", per_device_train_batch_size=spec.batch_size,
                                 max_steps=spec.max_steps, learning_rate=spec.lr, report_to=[], save_strategy="no",
                                 logging_strategy="no", use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
                                 dataloader_num_workers=0, dataloader_pin_memory=torch.cuda.is_available(),
                                 seed=spec.seed, bf16=bf16,
                                 train_sampling_strategy="group_by_length" if group_by_length else "random")
        trainer = Trainer(model=model, args=args, train_dataset=DS(),
                          data_collator=lambda b: collate([Encoded(x["input_ids"], x["labels"]) for x in b],
                                                          tok.pad_token_id))
        trainer.train()
    return {"seconds": wall["seconds"], "peak_mb": mem["peak_mb"]}


def ours_run(model, tok, samples, spec: TrainSpec) -> dict:
    with timer() as wall, peak_memory() as mem:
        res = train(model, tok, samples, spec, progress=False)
    return {"seconds": wall["seconds"], "loop_seconds": res.state.seconds, "peak_mb": mem["peak_mb"],
            "answer_tokens": res.state.tokens}


RUNNERS = {"ours": ours_run, "trainer": hf_trainer_run}


def setup(quick: bool, method: str):
    """(model name, samples, spec): `steps × batch` samples, one epoch."""
    steps, batch = (4, 8) if quick else (10, 8)
    pool = load_split("sst2", "train")[: steps * batch * 3 // 4] + load_split("harmful_qa", "train")
    spec = TrainSpec(method=method, batch_size=batch, max_len=128 if quick else 256, max_steps=steps, lr=1e-4,
                     epochs=1)
    return bench_model(quick), pool[: steps * batch], spec


def child_peak_mb(quick: bool, method: str, which: str) -> float:
    """Peak memory of one variant, run alone in a fresh interpreter."""
    cmd = [sys.executable, "-m", "benchmarks.bench_training", "--child", which, method] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mb"]


def child(quick: bool, which: str, method: str) -> None:
    name, samples, spec = setup(quick, method)
    model, tok = load_model(name, device=bench_device())
    print(json.dumps(RUNNERS[which](model, tok, samples, spec)))


def _seconds(run: dict) -> float:
    return run["seconds"]


def main(quick: bool) -> None:
    device = bench_device()
    peak = measured_matmul_peak(device)
    rows, headline = {}, {}
    for method in ("full", "lora"):
        name, samples, spec = setup(quick, method)
        base, tok = load_model(name, device=device)
        train(copy.deepcopy(base), tok, samples[:spec.batch_size], spec.model_copy(update={"max_steps": 1}),
              progress=False)  # warm-up
        reps = 5 if quick else 1  # best of reps: tiny runs are short enough for other load to swamp one
        ours = min((ours_run(copy.deepcopy(base), tok, samples, spec) for _ in range(reps)), key=_seconds)
        hf = min((hf_trainer_run(copy.deepcopy(base), tok, samples, spec) for _ in range(reps)), key=_seconds)
        ours_mb, hf_mb = child_peak_mb(quick, method, "ours"), child_peak_mb(quick, method, "trainer")
        fl = train_flops(base, tok, samples, spec)
        tokens = ours["answer_tokens"]
        rows[method] = {
            "ours_seconds": round(ours["seconds"], 3), "ours_loop_seconds": round(ours["loop_seconds"], 3),
            "trainer_seconds": round(hf["seconds"], 3),
            "tokens_per_s_ratio_ours_vs_trainer": round(hf["seconds"] / ours["seconds"], 3),
            "ours_answer_tokens_per_s": round(tokens / ours["seconds"], 1),
            "trainer_answer_tokens_per_s": round(tokens / hf["seconds"], 1),
            "ours_tokens_per_s": round(fl["tokens"] / ours["seconds"], 1),
            "trainer_tokens_per_s": round(fl["tokens"] / hf["seconds"], 1),
            "ours_peak_mb": ours_mb, "trainer_peak_mb": hf_mb,
            "answer_tokens": tokens, "tokens": fl["tokens"], "padded_tokens": fl["padded_tokens"],
            "padding_fraction": round(1 - fl["tokens"] / fl["padded_tokens"], 3),
            "matmul_flops_per_s": round(fl["flops"] / ours["loop_seconds"]),
            "mfu": round(fl["flops_real_tokens"] / ours["loop_seconds"] / peak, 4),
            "hardware_matmul_utilization": round(fl["flops"] / ours["loop_seconds"] / peak, 4),
        }
        r = rows[method]
        headline[f"{method}: tokens/s ours vs Trainer"] = f"{r['tokens_per_s_ratio_ours_vs_trainer']}×"
        headline[f"{method}: tokens/s ours (Trainer)"] = \
            f"{r['ours_tokens_per_s']:.0f} ({r['trainer_tokens_per_s']:.0f})"
        headline[f"{method}: peak MiB ours (Trainer)"] = f"{ours_mb:.0f} ({hf_mb:.0f})"
        headline[f"{method}: MFU vs measured matmul peak"] = f"{100 * r['mfu']:.1f} %"
    headline["matmul peak (float32)"] = f"{peak / 1e9:.1f} GFLOP/s"
    save("training", {"quick": quick, "model": name, "reps": reps, "steps": spec.max_steps,
                      "batch_size": spec.batch_size, "max_len": spec.max_len, "samples": len(samples),
                      "matmul_peak_flops_per_s": round(peak), "results": rows,
                      "note": "MFU = model matmul FLOPs on real (non-pad) tokens / loop seconds / measured "
                              "float32 matmul peak; hardware_matmul_utilization counts padded positions too. "
                              "Peak memory above the loaded model, each variant alone in a fresh process: "
                              "CUDA max allocated, or the sampled resident-set peak on CPU."},
         headline, goals={"full: tokens/s ours vs Trainer": "≥ 1.0", "lora: tokens/s ours vs Trainer": "≥ 1.0"})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("WHICH", "METHOD"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    child(a.quick, *a.child) if a.child else main(a.quick)
