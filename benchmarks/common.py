"""Shared benchmark plumbing: model choice by --quick, timing, peak memory, result files.

Benchmarks print ratios measured side by side in one process run plus absolute figures, and write
`benchmarks/results/<name>.json`; they never assert (speed goals are reported, not tested).
"""
from __future__ import annotations

import json
import platform
import resource
import time
from contextlib import contextmanager
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def bench_model(quick: bool) -> str:
    return "tiny-llama" if quick else "smollm2-135m-instruct"


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()} threads"


@contextmanager
def timer():
    out = {}
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    yield out
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    out["seconds"] = time.perf_counter() - t0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "device": device_name(), "python": platform.python_version(),
               "torch": torch.__version__, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **payload}
    path = RESULTS / f"{name}{'-quick' if payload.get('quick') else ''}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload, indent=2))
    return path
