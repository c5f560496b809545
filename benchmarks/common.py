"""Shared benchmark plumbing: model and device choice, timing, peak memory, result files.

Benchmarks print ratios measured side by side in one process run plus absolute figures, and write
`benchmarks/results/<name>[-quick]-<cpu|gpu>.json` with the machine they ran on (device, torch version,
threads, git hash) so `benchmarks/report.py` can render CPU and GPU tables; they never assert (speed
goals are reported, not tested).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch

from workbench.machine import available_cpus, cpu_flags, cpu_model
from workbench.runs import git_hash

RESULTS = Path(__file__).parent / "results"


def bench_model(quick: bool) -> str:
    return "tiny-llama" if quick else "smollm2-135m-instruct"


def bench_device() -> str:
    """Where benchmarked models run: the GPU when there is one (load_model's "auto")."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def machine() -> dict:
    """What the numbers depend on; recorded in every result file."""
    gpu = torch.cuda.is_available()
    return {"device_kind": "gpu" if gpu else "cpu",
            "device": torch.cuda.get_device_name(0) if gpu else cpu_model(),
            "cpu": cpu_model(), "cpu_flags": cpu_flags(), "cpu_count": os.cpu_count(),
            "cpus_available": available_cpus(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "cuda": torch.version.cuda if gpu else None,
            "python": platform.python_version(), "git_hash": git_hash(), "git_dirty": _git_dirty(),
            "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}


def _git_dirty() -> bool | None:
    """Whether tracked files differ from the recorded commit (numbers then belong to uncommitted code)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                             text=True, timeout=10, cwd=Path(__file__).parent)
        return bool(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@contextmanager
def timer():
    out = {}
    _sync()
    t0 = time.perf_counter()
    yield out
    _sync()
    out["seconds"] = time.perf_counter() - t0


def best_of(fn: Callable, reps: int = 3, warmup: int = 1):
    """(min seconds over `reps` timed calls after `warmup` untimed ones, last result): the usual
    micro-benchmark estimate, least disturbed by other load on the machine."""
    for _ in range(warmup):
        fn()
    best, result = float("inf"), None
    for _ in range(max(1, reps)):
        with timer() as t:
            result = fn()
        best = min(best, t["seconds"])
    return best, result


def _rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def peak_memory(interval: float = 0.005):
    """Peak memory of the block in MiB: CUDA max allocated on a GPU; on CPU the peak resident set
    (sampled every `interval` s) minus the resident set at entry, so runs in one process compare."""
    out: dict = {}
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        yield out
        torch.cuda.synchronize()
        out["peak_mb"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)
        return
    base = _rss_mb()
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mb())
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], _rss_mb())
        out["peak_mb"] = round(peak[0] - base, 1)


def result_path(name: str, quick: bool, device_kind: str | None = None) -> Path:
    kind = device_kind or ("gpu" if torch.cuda.is_available() else "cpu")
    return RESULTS / f"{name}{'-quick' if quick else ''}-{kind}.json"


def save(name: str, payload: dict, headline: dict | None = None, goals: dict | None = None) -> Path:
    """Write one result file. `headline`: {label: value} for the docs table; `goals`: {label: goal text}."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    payload = {"benchmark": name, **info, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "headline": headline or {}, "goals": goals or {}, **payload}
    path = result_path(name, bool(payload.get("quick")), info["device_kind"])
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    print(json.dumps(payload, indent=2, ensure_ascii=False))
    return path
