"""Run every benchmark: `python -m benchmarks.run_all [--quick]` (make bench runs the quick mode)."""
from __future__ import annotations

import argparse
import importlib

BENCHMARKS = ["bench_quickstart", "bench_generation", "bench_training"]

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    for name in BENCHMARKS:
        print(f"== {name}")
        importlib.import_module(f"benchmarks.{name}").main(args.quick)
