"""What the machine offers a run: the CPU model, the instruction sets that decide which precisions run natively,
and the cores this process may actually use.

Why it matters: every number here is CPU-bound, CPU models differ between sessions, and a container's cgroup
quota or affinity mask can hold fewer cores than the host shows. Intra-op threads beyond the cores this process
may run on oversubscribe them (two threads fighting for one core run several times slower than one), so the
thread count comes from the affinity mask and the cgroup quota, never from the host's core count. The run record
keeps `describe()`, so a timing can always be read next to the machine that produced it.
"""
from __future__ import annotations

import math
import os
import platform
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict

# The flags that decide which matrix precisions run natively (bf16 needs AVX512-BF16 or AMX on x86).
FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "fma")
CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


class Machine(BaseModel):
    """The machine a run ran on, as its record keeps it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    cpu: str
    flags: list[str] = []
    cpus: int  # cores this process may use (affinity and cgroup quota)
    threads: int | None = None  # torch intra-op threads, when torch was loaded


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model(cpuinfo: str | None = None) -> str:
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The flags of FLAGS_OF_INTEREST that this CPU has, in that order."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return [f for f in FLAGS_OF_INTEREST if f in have]
    return []


def cgroup_cpu_limit(cpu_max: Path = CGROUP_V2_CPU_MAX, v1_quota: Path = CGROUP_V1_QUOTA,
                     v1_period: Path = CGROUP_V1_PERIOD) -> int | None:
    """Cores the cgroup quota allows (rounded up), or None when there is no quota (cgroup v2, then v1)."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:
        quota, period = int(v1_quota.read_text()), int(v1_period.read_text())
        return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """Cores this process may run on: the affinity mask, capped by the cgroup quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity API (macOS): the host's count is all there is
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return min(cpus, limit) if limit else cpus


def configure_threads() -> int:
    """Set torch's intra-op threads to the available cores, unless the user chose (OMP_NUM_THREADS or
    WORKBENCH_THREADS); returns the count in force."""
    import torch  # deferred: torch

    chosen = os.environ.get("WORKBENCH_THREADS") or os.environ.get("OMP_NUM_THREADS")
    threads = int(chosen) if chosen and chosen.isdigit() and int(chosen) > 0 else available_cpus()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def describe() -> Machine:
    torch = sys.modules.get("torch")  # threads only when torch is already loaded: describing never loads it
    cpuinfo = _cpuinfo()  # read once: every run record describes its machine
    return Machine(cpu=cpu_model(cpuinfo), flags=cpu_flags(cpuinfo), cpus=available_cpus(),
                   threads=torch.get_num_threads() if torch is not None else None)
