"""Versions of one model under ``<state_dir>/models/<name>/``.

Layout::

    versions/<n>/model.onnx            the graph that serves (fp32)
    versions/<n>/model.int8.onnx       optional quantized graph (served when it passed its check)
    versions/<n>/weights.safetensors   trainable weights to continue fine-tuning from
    versions/<n>/tokenizer.json        the fast tokenizer, so a version is self-contained
    versions/<n>/meta.json             parent, created, labels, data, metrics, status
    current                            the serving version number (see ``_pointer``)

A version is written into a staging directory and renamed into place when complete, so a crash
never leaves a half-written version visible; its meta.json records a digest of its files. The head
pointer (by default ``current``, replaced with an fsynced rename) only ever names a complete
version, and moves by compare-and-set, so two writers cannot silently overwrite each other.

A staging directory's owner holds an exclusive ``flock`` on the ``.owner.lock`` file inside it
until the directory is published or discarded. The kernel drops that lock when the owner dies
(kill -9 included), so :meth:`ModelRegistry.remove_stale_staging` can tell a crashed writer's
leftovers (a fine-tune's staging directory is about 100 MB) from a directory still being written.
"""

from __future__ import annotations

import dataclasses
import enum
import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from service.domain.versions import VersionMeta
from service.errors import Conflict, NotFound, disk_writes
from service.registry._digest import META_FILE, version_digest
from service.registry._files import atomic_write, fsync_dir, fsync_tree, locked
from service.registry._pointer import POINTER_TMP, Fence, FilePointer, HeadPointer

log = logging.getLogger(__name__)
STAGING_PREFIX = "staging-"
OWNER_LOCK = ".owner.lock"


class Head(enum.Enum):
    """``set_current``'s default ``expected``: whatever the pointer names when it is read."""

    AS_READ = "as-read"


@dataclass(frozen=True)
class VersionInfo:
    model: str
    version: int
    path: Path
    meta: VersionMeta

    @property
    def labels(self) -> list[str]:
        return list(self.meta.labels)

    @property
    def serving_file(self) -> Path:
        return self.path / self.meta.serving_file


@dataclass
class StagedVersion:
    """A version being written; becomes visible only through :meth:`ModelRegistry.publish`."""

    path: Path
    parent: int | None


class ModelRegistry:
    def __init__(
        self,
        state_dir: Path,
        model: str,
        pointer: HeadPointer | None = None,
        on_publish: Callable[[VersionInfo], None] | None = None,
        fence: Fence | None = None,
    ) -> None:
        self.model = model
        self.root = state_dir / "models" / model
        self.versions_dir = self.root / "versions"
        # ``fence``: the purge check of the default ``current`` file (a pointer in the database
        # checks in its own transaction).
        self._pointer: HeadPointer = (
            pointer if pointer is not None else FilePointer(self.root, fence)
        )
        self._on_publish = on_publish

    def versions(self) -> list[VersionInfo]:
        """Every complete version. A numbered directory without meta.json (copied in by hand, or
        a file system that lost a write) is skipped, not an error that hides the others."""
        return [
            self.get(n)
            for n in self._numbers()
            if (self.versions_dir / str(n) / META_FILE).is_file()
        ]

    def _numbers(self) -> list[int]:
        if not self.versions_dir.is_dir():
            return []
        return sorted(int(p.name) for p in self.versions_dir.iterdir() if p.name.isdigit())

    def get(self, version: int) -> VersionInfo:
        path = self.versions_dir / str(version)
        meta_path = path / META_FILE
        if not meta_path.is_file():
            raise NotFound(f"model {self.model!r} has no version {version}")
        meta = VersionMeta.from_dict(json.loads(meta_path.read_text(encoding="utf-8")))
        return VersionInfo(self.model, version, path, meta)

    def current(self) -> VersionInfo | None:
        """The version the pointer names, or None when the model has never been built."""
        version = self._pointer.read()
        return None if version is None else self.get(version)

    def set_current(
        self,
        version: int,
        expected: int | Literal[Head.AS_READ] | None = Head.AS_READ,
        job: str = "",
    ) -> VersionInfo:
        """Point the head at ``version`` if it still names ``expected`` (by default, what it
        names as this call begins); :class:`Conflict` when another writer moved it meanwhile.
        ``job``: the job that made ``version``, publishing it now; :class:`DataPurged` when
        samples of its data were purged (checked atomically with the move)."""
        info = self.get(version)  # versions are never removed: it stays valid
        if expected is Head.AS_READ:
            expected = self._pointer.read()
        if not self._pointer.compare_and_set(version, expected, job):
            raise Conflict(
                f"model {self.model!r}: the serving version changed from {expected} while "
                f"switching to {version}; check the versions and retry"
            )
        return info

    def verify(self, info: VersionInfo) -> bool:
        """Whether the version's files still match the digest recorded when it was published
        (a version from before digests were recorded has none and passes)."""
        return not info.meta.digest or version_digest(info.path) == info.meta.digest

    @contextmanager
    def stage(self, parent: int | None) -> Iterator[StagedVersion]:
        """A scratch directory for a new version; removed unless it is published."""
        # Created and locked under the registry lock, so remove_stale_staging (which takes it
        # too) never sees the directory before its owner lock exists.
        with locked(self.root), disk_writes(f"a new version of model {self.model!r}"):
            path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.root))
            try:
                owner = (path / OWNER_LOCK).open("a")
            except BaseException:
                shutil.rmtree(path, ignore_errors=True)
                raise
            fcntl.flock(owner, fcntl.LOCK_EX)  # a fresh file: nobody else can hold it
        try:
            yield StagedVersion(path=path, parent=parent)
        finally:
            shutil.rmtree(path, ignore_errors=True)
            owner.close()

    def remove_stale_staging(self) -> list[Path]:
        """Remove staging directories whose writer died, and pointer temporaries of a crashed
        write; a directory another process (or this one) is still writing is kept."""
        if not self.root.is_dir():
            return []
        removed: list[Path] = []
        with locked(self.root):
            for path in sorted(self.root.iterdir()):
                if path.name.startswith(POINTER_TMP):
                    path.unlink(missing_ok=True)
                    removed.append(path)
                elif path.name.startswith(STAGING_PREFIX) and path.is_dir() and _abandoned(path):
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
        for path in removed:
            log.warning("removed %s, left behind by a process that stopped while writing", path)
        return removed

    def publish(self, staged: StagedVersion, meta: VersionMeta) -> VersionInfo:
        """Give the staged files the next version number and make them visible, atomically.
        The registry fills in the model, number, parent, creation time and digest."""
        with disk_writes(f"version files of model {self.model!r}"):
            return self._publish(staged, meta)

    def _publish(self, staged: StagedVersion, meta: VersionMeta) -> VersionInfo:
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        with locked(self.root):
            # Past every numbered directory, complete or not: rename cannot replace one.
            number = max(self._numbers(), default=0) + 1
            # The owner lock stays held through its open descriptor until stage() ends; the
            # published version does not carry the file.
            (staged.path / OWNER_LOCK).unlink(missing_ok=True)
            full = dataclasses.replace(
                meta,
                model=self.model,
                version=number,
                parent=staged.parent,
                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                digest=version_digest(staged.path),
            )
            _write_meta(staged.path, full)
            fsync_tree(staged.path)
            target = self.versions_dir / str(number)
            os.rename(staged.path, target)
            fsync_dir(self.versions_dir)
        info = self.get(number)
        if self._on_publish is not None:
            self._on_publish(info)
        return info

    def update_meta(self, version: int, **changes: Any) -> VersionInfo:
        """Replace fields of a version's meta (``VersionMeta`` field names; others raise
        TypeError). The digest covers the files, not meta.json, so it stays valid."""
        with locked(self.root):
            info = self.get(version)
            _write_meta(info.path, dataclasses.replace(info.meta, **changes))
        return self.get(version)


def _write_meta(directory: Path, meta: VersionMeta) -> None:
    atomic_write(directory / META_FILE, json.dumps(meta.to_dict(), indent=2) + "\n")


def _abandoned(staging: Path) -> bool:
    """True when no live process holds the staging directory's owner lock (or it has none: a
    directory from before owner locks, or one whose writer died before publishing)."""
    try:
        handle = (staging / OWNER_LOCK).open("rb")
    except FileNotFoundError:
        return True
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
    return True
