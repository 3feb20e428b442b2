"""Which version a model serves: the head pointer, behind a small interface.

The single-machine default is a file next to the versions. A deployment that shares versions
between processes on several machines can keep the head elsewhere (a database row), because a
renamed file on a network file system can stay invisible to other clients for a while.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Protocol

from service.registry._files import atomic_write, locked

POINTER_FILE = "current"
POINTER_TMP = f".{POINTER_FILE}.tmp-"  # atomic_write's temporary name for the pointer
# Held around a move that publishes a job's candidate (the store's ``publish_fence``): raises
# DataPurged when samples of the job's data were purged, and holds purges off meanwhile.
Fence = Callable[[str], AbstractContextManager[None]]


class HeadPointer(Protocol):
    def read(self) -> int | None:
        """The serving version's number, or None before the first version is made current."""
        ...

    def compare_and_set(self, version: int, expected: int | None, job: str = "") -> bool:
        """Point at ``version`` if the pointer still names ``expected``; False if it moved.
        With ``job`` (the job that made ``version``): :class:`~service.errors.DataPurged`
        instead when samples of its data were purged, checked atomically with the move."""
        ...


class FilePointer:
    """The ``current`` file: replaced by an fsynced rename under the registry lock, so it always
    names a complete version and a crash leaves the old or the new number, never a mix."""

    def __init__(self, root: Path, fence: Fence | None = None) -> None:
        self._root = root
        self._path = root / POINTER_FILE
        self._fence = fence

    def read(self) -> int | None:
        try:
            text = self._path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return int(text)

    def compare_and_set(self, version: int, expected: int | None, job: str = "") -> bool:
        fenced = self._fence(job) if job and self._fence is not None else nullcontext()
        with fenced, locked(self._root):
            if self.read() != expected:
                return False
            atomic_write(self._path, f"{version}\n")
        return True
