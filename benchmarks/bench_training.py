"""Training throughput: our loop vs Hugging Face `Trainer` (+ peft for LoRA), same model, data, batch,
sequence length and steps; answer tokens/s ratio (goal ≥ 1.0) and the loop's matmul FLOP/s vs a
measured matmul peak of this machine (MFU)."""
from __future__ import annotations

import argparse
import copy

import torch

from benchmarks.common import bench_model, save, timer
from workbench.config import TrainSpec
from workbench.data.chat import collate, encode
from workbench.data.registry import load_split
from workbench.models import load_model
from workbench.training.loop import train, wrap_lora


def measured_matmul_peak(n: int = 1024, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    with timer() as t:
        for _ in range(reps):
            a @ b
    return 2 * n**3 * reps / t["seconds"]


def hf_trainer_run(model, tok, samples, spec: TrainSpec) -> float:
    from transformers import Trainer, TrainingArguments

    if spec.method == "lora":
        model = wrap_lora(model, spec)
    enc = [encode(tok, s, spec.max_len) for s in samples]

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(enc)

        def __getitem__(self, i):
            return enc[i]

    args = TrainingArguments(output_dir="/tmp/wb-bench-trainer", per_device_train_batch_size=spec.batch_size,
                             max_steps=spec.max_steps, learning_rate=spec.lr, report_to=[], save_strategy="no",
                             logging_strategy="no", use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
                             dataloader_num_workers=0, seed=spec.seed, group_by_length=False)
    trainer = Trainer(model=model, args=args, train_dataset=DS(),
                      data_collator=lambda b: collate(b, tok.pad_token_id))
    with timer() as t:
        trainer.train()
    return t["seconds"]


def main(quick: bool) -> None:
    name = bench_model(quick)
    samples = load_split("sst2", "train")[:64] + load_split("harmful_qa", "train")[:16]
    steps = 4 if quick else 10
    rows = {}
    for method in ("full", "lora"):
        spec = TrainSpec(method=method, batch_size=8, max_len=128 if quick else 256, max_steps=steps, lr=1e-4)
        base, tok = load_model(name)
        ours = train(copy.deepcopy(base), tok, samples, spec, progress=False)
        answer_tokens = ours.state.tokens
        hf_seconds = hf_trainer_run(copy.deepcopy(base), tok, samples, spec)
        n_params = sum(p.numel() for p in base.parameters())
        # 6·N·T FLOPs per trained token (forward + backward), counting all tokens the batches carried.
        rows[method] = {"ours_seconds": round(ours.state.seconds, 2), "trainer_seconds": round(hf_seconds, 2),
                        "speed_ratio_ours_vs_trainer": round(hf_seconds / ours.state.seconds, 3),
                        "ours_answer_tokens_per_s": round(answer_tokens / ours.state.seconds, 1),
                        "approx_train_flops_per_s": 6 * n_params * answer_tokens / ours.state.seconds}
    peak = measured_matmul_peak()
    for r in rows.values():
        r["mfu_vs_matmul_peak"] = round(r["approx_train_flops_per_s"] / peak, 4)
    save("training", {"quick": quick, "model": name, "steps": steps, "matmul_peak_flops": peak, "results": rows,
                      "note": "Trainer pads each batch to its longest like ours but without length bucketing; "
                              "MFU counts answer tokens only (a lower bound)."})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    main(ap.parse_args().quick)
