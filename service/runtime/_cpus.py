"""How many CPUs this process may really use: affinity and the cgroup CPU quota, not host cores.

In a container limited to 2 CPUs ``os.cpu_count()`` still reports every host core, and sizing
thread pools by it makes ONNX Runtime and torch oversubscribe and get throttled.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def available_cpus() -> int:
    count = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def _cgroup_quota() -> float | None:
    try:
        if CGROUP_V2_CPU_MAX.is_file():
            limit, period = CGROUP_V2_CPU_MAX.read_text().split()[:2]
            return None if limit == "max" else int(limit) / int(period)
        if CGROUP_V1_QUOTA.is_file() and CGROUP_V1_PERIOD.is_file():
            quota = int(CGROUP_V1_QUOTA.read_text())
            return None if quota <= 0 else quota / int(CGROUP_V1_PERIOD.read_text())
    except (OSError, ValueError):
        return None
    return None
