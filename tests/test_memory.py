"""glibc's allocator settings for long-running processes (service.memory)."""

from __future__ import annotations

import platform
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from service import memory as _memory
from service.cli import main
from service.config import DriftRecipe
from service.drift import _process
from service.drift._messages import WorkerOptions


class FakeMallopt:
    def __init__(self, accepts: bool = True) -> None:
        self.calls: list[tuple[int, int]] = []
        self.accepts = accepts

    def __call__(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return int(self.accepts)


def with_libc(monkeypatch: pytest.MonkeyPatch, libc: Any) -> None:
    monkeypatch.setattr(_memory, "_libc", lambda: libc)
    for variable in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(variable, raising=False)


def test_thresholds_are_fixed_and_arenas_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    mallopt = FakeMallopt()
    with_libc(monkeypatch, SimpleNamespace(mallopt=mallopt))

    assert _memory.bound_heap()
    assert mallopt.calls == [
        (_memory.M_MMAP_THRESHOLD, 256 * 1024),
        (_memory.M_TRIM_THRESHOLD, 1024 * 1024),
        (_memory.M_ARENA_MAX, 2),
    ]


def test_a_setting_given_in_the_environment_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    mallopt = FakeMallopt()
    with_libc(monkeypatch, SimpleNamespace(mallopt=mallopt))
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")

    assert _memory.bound_heap()
    assert (_memory.M_ARENA_MAX, 2) not in mallopt.calls
    assert len(mallopt.calls) == 2


def test_a_c_library_without_mallopt_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    with_libc(monkeypatch, SimpleNamespace())
    assert not _memory.bound_heap()
    with_libc(monkeypatch, None)
    assert not _memory.bound_heap()


def test_a_refused_setting_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with_libc(monkeypatch, SimpleNamespace(mallopt=FakeMallopt(accepts=False)))
    assert _memory.bound_heap()
    assert [r.getMessage() for r in caplog.records] == [
        f"mallopt({_memory.M_MMAP_THRESHOLD}, 262144) was refused",
        f"mallopt({_memory.M_TRIM_THRESHOLD}, 1048576) was refused",
        f"mallopt({_memory.M_ARENA_MAX}, 2) was refused",
    ]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_glibc_accepts_the_settings() -> None:
    """In a process of its own: the settings stay for the life of the process."""
    code = "from service.memory import bound_heap; print(bound_heap())"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "True", "")


def test_serve_bounds_the_heap_before_the_server_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[str] = []

    class FakeApp:
        def __init__(self, settings: object) -> None:
            calls.append("app")

        async def run_until_signal(self) -> int:
            return 0

    monkeypatch.setattr(_memory, "bound_heap", lambda: calls.append("bound_heap") or True)
    monkeypatch.setattr("service.app.App", FakeApp)
    state = ["--state-dir", str(tmp_path), "--models-dir", str(tmp_path)]

    assert main(["serve", *state, "--insecure"]) == 0
    assert calls == ["bound_heap", "app"]


def test_the_drift_worker_bounds_its_heap_first(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class FakeWorker:
        def __init__(self, options: WorkerOptions, outbox: object) -> None:
            calls.append("worker")

        def run(self, inbox: object) -> None:
            calls.append("run")

    monkeypatch.setattr(_process, "bound_heap", lambda: calls.append("bound_heap") or True)
    monkeypatch.setattr(_process, "Worker", FakeWorker)
    monkeypatch.setattr(_process, "lower_priority", lambda nice: None)
    monkeypatch.setattr(_process, "_limit_threads", lambda threads: None)
    monkeypatch.setattr(_process, "_without_torch", lambda: None)
    options = WorkerOptions(Path("unused"), {"m": DriftRecipe()})

    unused = cast(Connection, SimpleNamespace())
    _process.main(options, unused, unused)
    assert calls == ["bound_heap", "worker", "run"]
