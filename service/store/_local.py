"""The trainer lease and head watcher of a store that only one process uses (SQLite).

One process is the whole deployment, so the lease is always held, and every head change goes
through the store object itself, which calls its watchers back after the change commits.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from service.store._interface import HeadCallback

log = logging.getLogger(__name__)


class _HeadMover(Protocol):
    def move_head(self, model: str, version: int, expected: int | None, job: str = "") -> bool: ...


class HeadCallbacks:
    """The watchers of one store object; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[HeadCallback] = []

    def add(self, callback: HeadCallback) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def remove(self, callback: HeadCallback) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def changed(self, model: str) -> None:
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            # One failing watcher must neither stop the others nor fail the head move.
            try:
                callback(model)
            except Exception:
                log.exception("head watcher failed for model %s", model)


class LocalLease:
    """Always held: a single process is the only trainer there is."""

    def __init__(self, store: _HeadMover) -> None:
        self._store = store

    def try_acquire(self) -> bool:
        return True

    def held(self) -> bool:
        return True

    def move_head(self, model: str, version: int, expected: int | None, job: str = "") -> bool:
        return self._store.move_head(model, version, expected, job)

    def close(self) -> None:
        pass


class LocalHeadWatcher:
    """Called back from ``move_head`` of the same store object."""

    def __init__(self, callbacks: HeadCallbacks) -> None:
        self._callbacks = callbacks
        self._on_change: HeadCallback | None = None

    def start(self, on_change: HeadCallback) -> None:
        self.stop()
        self._on_change = on_change
        self._callbacks.add(on_change)

    def stop(self) -> None:
        if self._on_change is not None:
            self._callbacks.remove(self._on_change)
            self._on_change = None
