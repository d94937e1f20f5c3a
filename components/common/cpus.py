"""How many CPUs this process may use: the default for every `workers: 0` ("one per CPU").

`os.cpu_count()` is the machine's count. In a Kubernetes pod that is the node's (say 64), while the container may
be limited to a few CPUs by its cgroup's CFS quota (`resources.limits.cpu`) or pinned to some by its CPU affinity
(the static CPU manager). Starting one worker per node CPU under a 4-CPU limit only adds memory and throttling.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v2: <root>/cpu.max is "<quota_us> <period_us>" or "max <period_us>" (no limit)
CGROUP_V2_CPU_MAX = "cpu.max"
# cgroup v1: the cpu controller's directory (its name depends on the distribution); quota -1 = no limit
CGROUP_V1_CPU_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def available_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process may use, at least 1: the CPUs it may be scheduled on (its affinity), capped by its
    cgroup's CPU limit in whole CPUs (quota / period, rounded up) when one is set."""
    limit = cgroup_cpu_limit(cgroup_root)
    return max(1, min(_affinity_cpus(), limit) if limit is not None else _affinity_cpus())


def cgroup_cpu_limit(cgroup_root: Path = CGROUP_ROOT) -> int | None:
    """The cgroup CPU limit under `cgroup_root` in whole CPUs (quota / period rounded up, at least 1); None when
    there is no limit, no cgroup file or one that cannot be read or parsed (then only the affinity counts).

    cgroup v2 is read first (`cpu.max`), then cgroup v1 (`cpu/cpu.cfs_quota_us` and `cpu/cpu.cfs_period_us`). Inside
    a container these are the container's own files (cgroup namespace, or Docker's v1 bind mounts)."""
    v2 = cgroup_root / CGROUP_V2_CPU_MAX
    try:
        if v2.is_file():
            quota, period = v2.read_text().split()
            return None if quota == "max" else _whole_cpus(int(quota), int(period))
        for name in CGROUP_V1_CPU_DIRS:
            quota_file, period_file = cgroup_root / name / "cpu.cfs_quota_us", cgroup_root / name / "cpu.cfs_period_us"
            if quota_file.is_file() and period_file.is_file():
                return _whole_cpus(int(quota_file.read_text()), int(period_file.read_text()))
    except (OSError, ValueError):  # unreadable or not what the kernel writes: no limit known
        return None
    return None


def _whole_cpus(quota_us: int, period_us: int) -> int | None:
    if quota_us <= 0 or period_us <= 0:  # v1 writes -1 for no limit
        return None
    return max(1, math.ceil(quota_us / period_us))


def _affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux (macOS): no affinity API
        return os.cpu_count() or 1


CPUINFO = Path("/proc/cpuinfo")
# CPU flags under which TensorFlow hands float16 ops to oneDNN (tensorflow/core/util/util.cc,
# IsDataTypeSupportedByOneDNNOnThisCPU(DT_HALF): AVX512-FP16 or AMX-FP16, or AVX-NE-CONVERT); without them
# float16 ops take TensorFlow's Eigen kernels, the path mixed precision is tested on here
NATIVE_FLOAT16_FLAGS = frozenset({"avx512_fp16", "amx_fp16", "avx_ne_convert"})


def native_float16_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    """The native-float16 flags this CPU reports in /proc/cpuinfo (empty when none, or not Linux). Mixed-precision
    training on such a CPU gave NaN losses from the first step (issue 19), so the trainer refuses it there."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return flags & NATIVE_FLOAT16_FLAGS
