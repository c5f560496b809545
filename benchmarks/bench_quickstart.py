"""Quickstart wall time: tiny-llama with --quick (goal < 1 min on 2 cores), SmolLM2 otherwise (goal ≤ 20 min)."""
from __future__ import annotations

import argparse
import tempfile
import time

from benchmarks.common import bench_model, save
from workbench.pipeline import quickstart


def main(quick: bool) -> None:
    model = bench_model(quick)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        quickstart(model, out, progress=False)
        seconds = time.perf_counter() - t0
    goal = 60 if quick else 20 * 60
    save("quickstart", {"quick": quick, "model": model, "seconds": round(seconds, 1), "goal_seconds": goal,
                        "meets_goal": seconds <= goal},
         headline={"quickstart wall time (3 runs: eval, align, attack + evals)": f"{seconds:.1f} s"},
         goals={"quickstart wall time (3 runs: eval, align, attack + evals)": f"≤ {goal // 60} min"})


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    main(ap.parse_args().quick)
