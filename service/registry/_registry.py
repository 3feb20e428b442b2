"""Versions of one model under ``<state_dir>/models/<name>/``.

Layout::

    versions/<n>/model.onnx            the graph that serves (fp32)
    versions/<n>/model.int8.onnx       optional quantized graph (served when it passed its check)
    versions/<n>/weights.safetensors   trainable weights to continue fine-tuning from
    versions/<n>/tokenizer.json        the fast tokenizer, so a version is self-contained
    versions/<n>/meta.json             parent, created, labels, data, metrics, status
    current                            the serving version number

A version is written into a staging directory and renamed into place when complete, so a crash
never leaves a half-written version visible. ``current`` is replaced with an fsynced rename, so it
always names a complete version.

A staging directory's owner holds an exclusive ``flock`` on the ``.owner.lock`` file inside it
until the directory is published or discarded. The kernel drops that lock when the owner dies
(kill -9 included), so :meth:`ModelRegistry.remove_stale_staging` can tell a crashed writer's
leftovers (a fine-tune's staging directory is about 100 MB) from a directory still being written.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import NotFound

log = logging.getLogger(__name__)
META_FILE = "meta.json"
STAGING_PREFIX = "staging-"
OWNER_LOCK = ".owner.lock"
POINTER_TMP = ".current.tmp-"  # _atomic_write's temporary name for the pointer


@dataclass(frozen=True)
class VersionInfo:
    model: str
    version: int
    path: Path
    meta: dict[str, Any]

    @property
    def labels(self) -> list[str]:
        return list(self.meta["labels"])

    @property
    def serving_file(self) -> Path:
        return self.path / str(self.meta.get("serving_file", "model.onnx"))


@dataclass
class StagedVersion:
    """A version being written; becomes visible only through :meth:`ModelRegistry.publish`."""

    path: Path
    parent: int | None


class ModelRegistry:
    def __init__(self, state_dir: Path, model: str) -> None:
        self.model = model
        self.root = state_dir / "models" / model
        self.versions_dir = self.root / "versions"
        self._pointer = self.root / "current"

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
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return VersionInfo(self.model, version, path, meta)

    def current(self) -> VersionInfo | None:
        """The version the pointer names, or None when the model has never been built."""
        try:
            text = self._pointer.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return self.get(int(text))

    def set_current(self, version: int) -> VersionInfo:
        with self._lock():
            info = self.get(version)
            _atomic_write(self._pointer, f"{version}\n")
        return info

    @contextmanager
    def stage(self, parent: int | None) -> Iterator[StagedVersion]:
        """A scratch directory for a new version; removed unless it is published."""
        # Created and locked under the registry lock, so remove_stale_staging (which takes it
        # too) never sees the directory before its owner lock exists.
        with self._lock():
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
        with self._lock():
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

    def publish(self, staged: StagedVersion, meta: dict[str, Any]) -> VersionInfo:
        """Give the staged files the next version number and make them visible, atomically."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            # Past every numbered directory, complete or not: rename cannot replace one.
            number = max(self._numbers(), default=0) + 1
            full_meta = {
                "model": self.model,
                "version": number,
                "parent": staged.parent,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **meta,
            }
            _atomic_write(staged.path / META_FILE, json.dumps(full_meta, indent=2) + "\n")
            # The owner lock stays held through its open descriptor until stage() ends; the
            # published version does not carry the file.
            (staged.path / OWNER_LOCK).unlink(missing_ok=True)
            _fsync_tree(staged.path)
            target = self.versions_dir / str(number)
            os.rename(staged.path, target)
            _fsync_dir(self.versions_dir)
        return self.get(number)

    def update_meta(self, version: int, **changes: Any) -> VersionInfo:
        with self._lock():
            info = self.get(version)
            meta = {**info.meta, **changes}
            _atomic_write(info.path / META_FILE, json.dumps(meta, indent=2) + "\n")
        return self.get(version)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


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


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
