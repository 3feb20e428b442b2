"""Lowering a background process's CPU priority so that serving keeps its cores.

Used by the fine-tune job and the drift worker, both of which share the machine with ONNX Runtime.
"""

from __future__ import annotations

import os


def lower_priority(nice: int, idle_class: bool = True) -> bool:
    """Add ``nice`` to this process's niceness and, with ``idle_class``, move it to SCHED_IDLE
    where Linux offers it: it then runs only on CPU time nothing else wants (measured: at plain
    niceness a background process still delayed ONNX Runtime's threads on a 2-core machine).
    Returns whether SCHED_IDLE is in effect; niceness alone is the fallback when it is refused."""
    os.nice(nice)
    idle = getattr(os, "SCHED_IDLE", None)
    if not idle_class or idle is None:
        return False
    try:
        os.sched_setscheduler(0, idle, os.sched_param(0))
    except OSError:
        return False
    return True


__all__ = ["lower_priority"]
