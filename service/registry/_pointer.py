"""Which version a model serves: the head pointer, behind a small interface.

The single-machine default is a file next to the versions. A deployment that shares versions
between processes on several machines can keep the head elsewhere (a database row), because a
renamed file on a network file system can stay invisible to other clients for a while.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from service.registry._files import atomic_write, locked

POINTER_FILE = "current"
POINTER_TMP = f".{POINTER_FILE}.tmp-"  # atomic_write's temporary name for the pointer


class HeadPointer(Protocol):
    def read(self) -> int | None:
        """The serving version's number, or None before the first version is made current."""
        ...

    def compare_and_set(self, version: int, expected: int | None) -> bool:
        """Point at ``version`` if the pointer still names ``expected``; False if it moved."""
        ...


class FilePointer:
    """The ``current`` file: replaced by an fsynced rename under the registry lock, so it always
    names a complete version and a crash leaves the old or the new number, never a mix."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._path = root / POINTER_FILE

    def read(self) -> int | None:
        try:
            text = self._path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return int(text)

    def compare_and_set(self, version: int, expected: int | None) -> bool:
        with locked(self._root):
            if self.read() != expected:
                return False
            atomic_write(self._path, f"{version}\n")
        return True
