"""The registry's file writes on a full disk: StorageFull, the old content kept, no debris."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from service.errors import StorageFull
from service.registry import ModelRegistry
from service.registry._files import atomic_write


def _no_space(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "current"
    atomic_write(path, "1\n")
    monkeypatch.setattr(os, "fsync", _no_space)  # where a full disk shows at the latest
    with pytest.raises(StorageFull, match=r"^disk full: could not store current;"):
        atomic_write(path, "2\n")
    assert path.read_text() == "1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current"]


def test_a_quota_is_full_too_and_other_errors_stay_what_they_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def over_quota(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(os, "fsync", over_quota)
    with pytest.raises(StorageFull):
        atomic_write(tmp_path / "a", "x")

    def io_error(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", io_error)
    with pytest.raises(OSError, match="Input/output error"):
        atomic_write(tmp_path / "b", "x")


def test_staging_a_version_on_a_full_disk_is_storage_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(tmp_path, "tiny")
    monkeypatch.setattr("tempfile.mkdtemp", _no_space)
    staging = registry.stage(parent=None)
    with pytest.raises(StorageFull, match="a new version of model 'tiny'"), staging:
        pass
