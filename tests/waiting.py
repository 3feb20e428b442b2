"""Waiting in tests: for a condition, polled until a deadline, never for a fixed time.

A test that waits a fixed time is slow where the machine is fast and flaky where it is loaded;
one that polls what it waits for goes on as soon as that holds, and fails with what it last saw.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Polls start fast, for what holds almost at once, and slow down to ten a second, so that a
# long wait (a fine-tune) does not take CPU from what it waits for.
FIRST_POLL_S, LAST_POLL_S = 0.005, 0.1

Description = str | Callable[[], object]


def wait_until(
    condition: Callable[[], T], timeout: float = 10.0, what: Description = "the condition"
) -> T:
    """Poll ``condition`` until it returns a true value, and return that value. After ``timeout``
    seconds the test fails naming ``what`` (a text, or a callable that shows the last state)."""
    return wait_for(condition, bool, timeout, what)


def wait_for(
    read: Callable[[], T],
    done: Callable[[T], object],
    timeout: float = 10.0,
    what: Description = "the condition",
) -> T:
    """Poll ``read`` until ``done`` holds for what it returned, and return that. After ``timeout``
    seconds the test fails with ``what`` and the last value read."""
    deadline, pause = time.monotonic() + timeout, FIRST_POLL_S
    while not done(value := read()):
        _check(deadline, timeout, what, value)
        time.sleep(pause)
        pause = min(pause * 2, LAST_POLL_S)
    return value


async def wait_until_async(
    condition: Callable[[], T], timeout: float = 10.0, what: Description = "the condition"
) -> T:
    """:func:`wait_until` inside a coroutine: polls without blocking the event loop."""
    deadline, pause = time.monotonic() + timeout, FIRST_POLL_S
    while not (value := condition()):
        _check(deadline, timeout, what, value)
        await asyncio.sleep(pause)
        pause = min(pause * 2, LAST_POLL_S)
    return value


def _check(deadline: float, timeout: float, what: Description, last: object) -> None:
    if time.monotonic() >= deadline:
        shown = what if isinstance(what, str) else what()
        raise AssertionError(f"not reached within {timeout:g} s: {shown} (last read: {last!r})")
