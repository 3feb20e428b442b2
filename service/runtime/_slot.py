"""The serving version of one model, swappable while requests run.

A batch leases the version it runs on; a swap installs an already warmed version in one pointer
assignment and then waits for the old version's leases to end before the old session is freed.
Requests therefore never see a half-loaded model and none is dropped by a swap.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from service.errors import Unavailable
from service.memory import return_free_memory
from service.runtime._session import LoadedVersion


class ModelSlot:
    def __init__(self, model: str) -> None:
        self.model = model
        self._current: LoadedVersion | None = None
        self._lock = threading.Lock()

    @property
    def current(self) -> LoadedVersion | None:
        return self._current

    @contextmanager
    def lease(self) -> Iterator[LoadedVersion]:
        with self._lock:
            version = self._current
            if version is None:
                raise Unavailable(f"model {self.model!r} is not loaded yet")
            version.acquire()
        try:
            yield version
        finally:
            version.release()

    def swap(self, new: LoadedVersion, drain_timeout: float = 30.0) -> LoadedVersion | None:
        """Serve ``new`` from now on; return the previous version, retired, once its batches
        finished or ``drain_timeout`` passed. Its session is freed here when they finished (on
        the swapping thread, not on the batcher's), else by the last of them as it ends."""
        with self._lock:
            old, self._current = self._current, new
        if old is None:
            return_free_memory()  # what loading left behind (graph optimisation's scratch)
            return None
        old.wait_idle(drain_timeout)
        old.retire()
        return old
