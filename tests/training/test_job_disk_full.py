"""A job process that runs out of disk says so in its result, as a typed flag the server counts."""

from __future__ import annotations

import errno
from pathlib import Path
from types import SimpleNamespace

import pytest

from service.domain.finetune import FineTuneResult
from service.training import _finetune


def test_a_job_that_cannot_write_its_files_reports_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result_path = tmp_path / "result.json"
    spec = SimpleNamespace(result_path=str(result_path), nice=0, idle_priority=False, threads=1)
    monkeypatch.setattr(_finetune.FineTuneSpec, "load", staticmethod(lambda path: spec))

    def no_space(spec: object) -> FineTuneResult:
        raise OSError(errno.ENOSPC, "No space left on device", "model.onnx")

    monkeypatch.setattr(_finetune, "_fine_tune", no_space)
    with pytest.raises(SystemExit):
        _finetune.run_job(str(tmp_path / "spec.json"))
    result = FineTuneResult.load(result_path)
    assert result is not None and not result.ok
    assert result.disk_full
    assert "No space left on device" in result.error


def test_other_failures_are_no_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result_path = tmp_path / "result.json"
    spec = SimpleNamespace(result_path=str(result_path), nice=0, idle_priority=False, threads=1)
    monkeypatch.setattr(_finetune.FineTuneSpec, "load", staticmethod(lambda path: spec))

    def broken(spec: object) -> FineTuneResult:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(_finetune, "_fine_tune", broken)
    with pytest.raises(SystemExit):
        _finetune.run_job(str(tmp_path / "spec.json"))
    result = FineTuneResult.load(result_path)
    assert result is not None and not result.disk_full
