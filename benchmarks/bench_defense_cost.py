"""Cost of each alignment-stage defense relative to plain safety SFT on the same data: seconds per optimizer
step and peak memory, for `workbench align --defense NAME` with the `full` preset (tiny-llama / `tiny` with
--quick).

Every defense trains the same first `steps` batches of the same alignment mix (same seed, same TrainSpec),
each in a fresh child process so the peak memory of one cannot hide in memory freed by another. Seconds per
step = the training loop's own clock over all steps / steps (the first step's one-off costs included, as in a
real run); peak memory = peak resident set during training minus the resident set after loading (CPU), or
CUDA max allocated (GPU). docs/defenses-alignment.md quotes the ratios.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks.common import bench_model, peak_memory, save

ALIGNMENT = ["sft", "vaccine", "t_vaccine", "repnoise", "booster", "tar"]


def child(quick: bool, defense: str, steps: int) -> dict:
    from workbench.config import DefenseSpec
    from workbench.models import load_model
    from workbench.presets import preset
    from workbench.steps import alignment_inputs, seed_everything
    from workbench.training.loop import train

    model_name, p = bench_model(quick), preset("tiny" if quick else "full")
    seed_everything(0)
    spec = p.align.model_copy(update={"train": p.align.train.model_copy(update={"max_steps": steps}),
                                      "defense": DefenseSpec(name=defense)})
    _, samples, plugins = alignment_inputs(spec, model_name, 0)
    model, tok = load_model(model_name)
    with peak_memory(interval=0.02) as mem:
        result = train(model, tok, samples, spec.train, list(plugins), progress=False)
    s = result.state
    return {"defense": defense, "steps": s.step, "seconds": round(s.seconds, 2),
            "s_per_step": round(s.seconds / s.step, 3), "peak_mb": mem["peak_mb"]}


def run_child(quick: bool, defense: str, steps: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_defense_cost", "--child", defense, "--steps", str(steps)]
    out = subprocess.run(cmd + (["--quick"] if quick else []), capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(quick: bool, steps: int | None = None, defenses: list[str] | None = None) -> None:
    steps = steps or (3 if quick else 8)
    defenses = defenses or ALIGNMENT
    if "sft" not in defenses:
        defenses = ["sft", *defenses]  # the baseline every ratio divides by
    rows = []
    for d in defenses:
        print(f"-- {d}", flush=True)
        rows.append(run_child(quick, d, steps))
    sft = rows[0]
    for r in rows:
        r["time_vs_sft"] = round(r["s_per_step"] / sft["s_per_step"], 2)
        r["memory_vs_sft"] = round(r["peak_mb"] / sft["peak_mb"], 2) if sft["peak_mb"] > 0 else None
    headline = {f"{r['defense']} time / memory vs SFT": f"{r['time_vs_sft']:.2f}× / {r['memory_vs_sft']}×"
                for r in rows[1:]}
    save("defense_cost", {"quick": quick, "model": bench_model(quick), "steps": steps, "rows": rows}, headline)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per defense (default 8; 3 quick)")
    ap.add_argument("--defenses", nargs="*", choices=ALIGNMENT, help="only these (SFT is always measured)")
    ap.add_argument("--child", metavar="DEFENSE", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.quick, a.child, a.steps or (3 if a.quick else 8))))
    else:
        main(a.quick, a.steps, a.defenses)
