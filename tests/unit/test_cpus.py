"""available_cpus: the affinity capped by the cgroup CPU limit, read from cgroup files written into tmp_path."""
import os

import pytest

from components.common import cpus
from components.common.cpus import available_cpus, cgroup_cpu_limit


def _cgroup(root, files: dict[str, str]):
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize("files, limit", [
    ({"cpu.max": "max 100000\n"}, None),  # v2, no limit
    ({"cpu.max": "200000 100000\n"}, 2),
    ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs: rounded up
    ({"cpu.max": "50000 100000\n"}, 1),  # 500m: at least 1
    ({"cpu.max": "400000 50000\n"}, 8),  # another period
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1, no limit
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
    ({"cpu,cpuacct/cpu.cfs_quota_us": "250000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 3),
    ({"cpu.max": "200000 100000\n", "cpu/cpu.cfs_quota_us": "800000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2),
    ({"cpu/cpu.cfs_quota_us": "300000\n"}, None),  # v1 without its period: not a limit we can read
    ({}, None),  # no cgroup files (not Linux, or not mounted)
    ({"cpu.max": "garbled\n"}, None),
    ({"cpu.max": "0 100000\n"}, None),
])
def test_cgroup_cpu_limit(tmp_path, files, limit):
    assert cgroup_cpu_limit(_cgroup(tmp_path, files)) == limit


@pytest.mark.parametrize("affinity, files, expected", [
    (8, {"cpu.max": "200000 100000"}, 2),  # a 2-CPU limit on an 8-CPU node
    (2, {"cpu.max": "800000 100000"}, 2),  # pinned to 2 CPUs, limit 8
    (8, {"cpu.max": "max 100000"}, 8),  # no limit: the affinity
    (8, {}, 8),
    (16, {"cpu/cpu.cfs_quota_us": "150000", "cpu/cpu.cfs_period_us": "100000"}, 2),
])
def test_available_cpus_is_the_affinity_capped_by_the_limit(tmp_path, monkeypatch, affinity, files, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(affinity)), raising=False)
    assert available_cpus(_cgroup(tmp_path, files)) == expected


def test_without_an_affinity_api_the_cpu_count_counts(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert available_cpus(_cgroup(tmp_path, {"cpu.max": "300000 100000"})) == 3
    assert available_cpus(tmp_path / "none") == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert cpus._affinity_cpus() == 1


def test_on_this_machine_it_is_at_least_one_and_at_most_the_affinity():
    n = available_cpus()
    assert 1 <= n <= (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
