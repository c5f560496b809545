"""What the machine offers a run: the CPU model, the instruction sets that decide which precisions run natively,
and the cores this process may actually use.

Why it matters: every number here is CPU-bound, CPU models differ between sessions, and a container's cgroup
quota or affinity mask can hold fewer cores than the host shows. Intra-op threads beyond the cores this process
may run on oversubscribe them (two threads fighting for one core run several times slower than one), so the
thread count comes from the affinity mask and the cgroup quota, never from the host's core count. The run record
keeps `describe()`, so a timing can always be read next to the machine that produced it.

`ray_cluster` starts (or joins) the Ray cluster that sweeps and stress studies spread their runs over.
"""
from __future__ import annotations

import contextlib
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


OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@contextlib.contextmanager
def ray_cluster(address: str | None, env: dict[str, str] | None = None, num_cpus: int | None = None):
    """Start a local Ray cluster (of `num_cpus` cores; default all available), or connect to `address`, before
    anything is written: a wrong address is one clear error and leaves the output folder untouched. Workers run
    offline, with `env` added to their environment (e.g. WORKBENCH_THREADS, so parallel runs do not oversubscribe
    the cores). A cluster this call started is shut down on exit; one already running is left as it was."""
    import ray  # deferred: ray

    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     num_cpus=num_cpus if address is None else None,
                     runtime_env={"env_vars": {**OFFLINE_ENV, **(env or {})}})
        except Exception as err:  # ray raises bare Exception for a node that fails to start, too
            raise ValueError(f"could not start or reach a Ray cluster at {address or 'a new local cluster'}: "
                             f"{err}") from None
    try:
        yield
    finally:
        if started:
            ray.shutdown()
