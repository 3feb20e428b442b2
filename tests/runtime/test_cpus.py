from __future__ import annotations

from pathlib import Path

import pytest

from service.runtime import _cpus
from service.runtime._cpus import available_cpus


@pytest.mark.parametrize(
    ("cpu_max", "expected"), [("150000 100000\n", 2), ("50000 100000\n", 1), ("max 100000\n", None)]
)
def test_cgroup_v2_quota_caps_the_cpu_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu_max: str, expected: int | None
) -> None:
    (tmp_path / "cpu.max").write_text(cpu_max)
    monkeypatch.setattr(_cpus, "CGROUP_V2_CPU_MAX", tmp_path / "cpu.max")
    monkeypatch.setattr(_cpus.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert available_cpus() == (expected if expected is not None else 8)


def test_without_a_cgroup_limit_affinity_decides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_cpus, "CGROUP_V2_CPU_MAX", tmp_path / "absent")
    monkeypatch.setattr(_cpus, "CGROUP_V1_QUOTA", tmp_path / "absent")
    monkeypatch.setattr(_cpus.os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert available_cpus() == 3
