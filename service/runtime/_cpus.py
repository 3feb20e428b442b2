"""How many CPUs this process may really use: affinity and the cgroup CPU quota, not host cores.

In a container limited to 2 CPUs ``os.cpu_count()`` still reports every host core, and sizing
thread pools by it makes ONNX Runtime and torch oversubscribe and get throttled.
``joblib.cpu_count()`` (loky's) takes the smallest of the host's CPUs, the process's affinity,
the cgroup quota (v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us``, rounded up) and the
``LOKY_MAX_CPU_COUNT`` environment variable where it is set.
"""

from __future__ import annotations

import joblib


def available_cpus() -> int:
    return max(1, int(joblib.cpu_count()))
