"""available_cpus: the host's CPUs capped by affinity and the cgroup quota. The cgroup files are
faked through ``os.path.exists`` and ``open`` (the paths joblib reads), the host and affinity
through ``os``."""

from __future__ import annotations

import builtins
import io
import os
from typing import Any

import pytest

from service.runtime._cpus import available_cpus

CPU_MAX = "/sys/fs/cgroup/cpu.max"
CGROUP_FILES = (
    CPU_MAX,
    "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
    "/sys/fs/cgroup/cpu/cpu.cfs_period_us",
)


def fake_host(
    monkeypatch: pytest.MonkeyPatch, cpus: int, affinity: set[int], cgroup: dict[str, str]
) -> None:
    """A host with ``cpus`` CPUs, this process bound to ``affinity``, and of the cgroup files
    only those in ``cgroup`` (path: content)."""
    exists, real_open = os.path.exists, builtins.open

    def fake_exists(path: Any) -> bool:
        return path in cgroup if path in CGROUP_FILES else exists(path)

    def fake_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        return (
            io.StringIO(cgroup[path]) if path in CGROUP_FILES else real_open(path, *args, **kwargs)
        )

    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: affinity)
    monkeypatch.setattr(os.path, "exists", fake_exists)
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.delenv("LOKY_MAX_CPU_COUNT", raising=False)


@pytest.mark.parametrize(
    ("cpu_max", "expected"), [("150000 100000\n", 2), ("50000 100000\n", 1), ("max 100000\n", 8)]
)
def test_cgroup_v2_quota_caps_the_cpu_count(
    monkeypatch: pytest.MonkeyPatch, cpu_max: str, expected: int
) -> None:
    fake_host(monkeypatch, 16, set(range(8)), {CPU_MAX: cpu_max})
    assert available_cpus() == expected


def test_cgroup_v1_quota_caps_the_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    quota, period = CGROUP_FILES[1:]
    fake_host(monkeypatch, 16, set(range(8)), {quota: "250000\n", period: "100000\n"})
    assert available_cpus() == 3


def test_without_a_cgroup_limit_affinity_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_host(monkeypatch, 16, {0, 1, 2}, {})
    assert available_cpus() == 3
