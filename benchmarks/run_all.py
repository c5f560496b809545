"""Run every benchmark, then render docs/benchmarks.md: `python -m benchmarks.run_all [--quick] [--only NAME ...]`
(make bench runs the quick mode). A failing benchmark is reported and the others still run."""
from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from benchmarks.report import write_report

BENCHMARKS = ["bench_quickstart", "bench_training", "bench_generation", "bench_analysis", "bench_defense_cost",
              "bench_dtype", "bench_refusal_selection"]

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*", choices=BENCHMARKS, help="run only these benchmarks")
    args = ap.parse_args()
    failed = []
    for name in args.only or BENCHMARKS:
        print(f"== {name}", flush=True)
        try:
            importlib.import_module(f"benchmarks.{name}").main(args.quick)
        except Exception:  # one broken benchmark must not hide the others' numbers
            traceback.print_exc()
            failed.append(name)
    print(f"wrote {write_report()}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")
