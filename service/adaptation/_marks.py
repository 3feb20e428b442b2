"""Drift marks kept in memory: for a core built without a store that keeps them (tests)."""

from __future__ import annotations

import threading

from service.store import AdaptationMark


class MemoryMarks:
    def __init__(self) -> None:
        self._marks: dict[tuple[str, str], AdaptationMark] = {}
        self._lock = threading.Lock()

    def raise_mark(self, mark: AdaptationMark) -> None:
        with self._lock:
            self._marks.setdefault((mark.model, mark.replica), mark)

    def clear_mark(self, model: str, replica: str) -> None:
        with self._lock:
            self._marks.pop((model, replica), None)

    def clear_marks(self, model: str) -> None:
        with self._lock:
            for key in [k for k in self._marks if k[0] == model]:
                del self._marks[key]

    def marks(self, model: str) -> list[AdaptationMark]:
        with self._lock:
            return [m for (name, _), m in self._marks.items() if name == model]
