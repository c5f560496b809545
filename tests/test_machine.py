"""The machine a run records and the threads a step uses: cores come from the affinity mask and the cgroup
quota, never from the host's count, and a user's explicit choice wins."""
from __future__ import annotations

import torch

from workbench import machine

CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480C
flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 amx_tile amx_bf16 amx_int8
"""


def test_cpu_model_and_the_precision_flags_are_read_from_cpuinfo():
    assert machine.cpu_model(CPUINFO) == "Intel(R) Xeon(R) Platinum 8480C"
    assert machine.cpu_flags(CPUINFO) == ["avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "fma"]
    assert machine.cpu_flags("flags\t: fpu sse avx2\n") == ["avx2"]


def test_cgroup_quota_caps_the_cores(tmp_path):
    v2 = tmp_path / "cpu.max"
    v2.write_text("150000 100000\n")  # 1.5 cores of quota → 2 threads
    assert machine.cgroup_cpu_limit(v2, tmp_path / "none", tmp_path / "none") == 2
    v2.write_text("max 100000\n")
    assert machine.cgroup_cpu_limit(v2, tmp_path / "none", tmp_path / "none") is None
    quota, period = tmp_path / "quota", tmp_path / "period"
    quota.write_text("100000\n"), period.write_text("100000\n")
    assert machine.cgroup_cpu_limit(tmp_path / "absent", quota, period) == 1  # cgroup v1
    quota.write_text("-1\n")
    assert machine.cgroup_cpu_limit(tmp_path / "absent", quota, period) is None


def test_available_cpus_is_the_smaller_of_affinity_and_quota(monkeypatch):
    monkeypatch.setattr(machine.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(machine, "cgroup_cpu_limit", lambda: 2)
    assert machine.available_cpus() == 2
    monkeypatch.setattr(machine, "cgroup_cpu_limit", lambda: None)
    assert machine.available_cpus() == 8


def test_threads_follow_the_available_cores_unless_the_user_chose(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("WORKBENCH_THREADS", raising=False)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(machine, "available_cpus", lambda: 3)
        assert machine.configure_threads() == 3 and torch.get_num_threads() == 3
        monkeypatch.setenv("WORKBENCH_THREADS", "1")
        assert machine.configure_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
