"""Background processes give serving the CPU: niceness, and SCHED_IDLE where Linux offers it."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from service.priority import lower_priority


def _lowered(idle_class: bool) -> tuple[bool, int, int]:
    before = os.nice(0)
    idle = lower_priority(3, idle_class)
    return idle, os.nice(0) - before, os.sched_getscheduler(0)


def _in_child(idle_class: bool) -> tuple[bool, int, int]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_lowered, (idle_class,))


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
def test_idle_class_puts_the_process_in_sched_idle_and_nices_it() -> None:
    idle, niced, policy = _in_child(True)
    assert idle and policy == os.SCHED_IDLE
    assert niced == 3


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only")
def test_without_idle_class_only_niceness_changes() -> None:
    idle, niced, policy = _in_child(False)
    assert not idle and policy == os.SCHED_OTHER
    assert niced == 3
