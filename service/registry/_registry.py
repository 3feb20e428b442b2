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
"""

from __future__ import annotations

import fcntl
import json
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

META_FILE = "meta.json"


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
        if not self.versions_dir.is_dir():
            return []
        numbers = sorted(int(p.name) for p in self.versions_dir.iterdir() if p.name.isdigit())
        return [self.get(n) for n in numbers]

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
        self.root.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix="staging-", dir=self.root))
        try:
            yield StagedVersion(path=path, parent=parent)
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def publish(self, staged: StagedVersion, meta: dict[str, Any]) -> VersionInfo:
        """Give the staged files the next version number and make them visible, atomically."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            number = max((v.version for v in self.versions()), default=0) + 1
            full_meta = {
                "model": self.model,
                "version": number,
                "parent": staged.parent,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **meta,
            }
            _atomic_write(staged.path / META_FILE, json.dumps(full_meta, indent=2) + "\n")
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
