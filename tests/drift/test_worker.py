"""The drift worker on its own: a failing detector does not take the others down."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_detectors import one_torch_thread, stream  # noqa: F401 (autouse)

from service.config import DriftRecipe
from service.drift import DetectorState, DetectorStatus, LabelDetector
from service.drift._messages import Activate, Observe, Statuses, Stop, WorkerOptions
from service.drift._worker import Worker


def latest(outbox: Any, want: Any, timeout: float = 10) -> dict[str, DetectorStatus]:
    deadline = time.monotonic() + timeout
    last: dict[str, DetectorStatus] = {}
    while time.monotonic() < deadline:
        if outbox.poll(0.1):
            message = outbox.recv()
            if isinstance(message, Statuses):
                last = {s.detector: s for s in message.statuses}
                if want(last):
                    return last
    raise AssertionError(f"timed out; last statuses {last}")


def test_a_detector_that_fails_to_score_is_marked_failed_and_the_others_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = DriftRecipe(
        detectors=("confidence", "labels"), reference_size=40, test_window_size=20, ert=20_000
    )
    inbox_worker, inbox = multiprocessing.Pipe(duplex=False)
    outbox, outbox_worker = multiprocessing.Pipe(duplex=False)
    worker = Worker(WorkerOptions(tmp_path, {"m": recipe}), outbox_worker)
    thread = threading.Thread(target=worker.run, args=(inbox_worker,), daemon=True)
    thread.start()
    try:
        inbox.send(Activate("m", 1, None))
        inbox.send(Observe("m", 1, stream(40, seed=1)))
        latest(outbox, lambda s: all(x.state is DetectorState.READY for x in s.values()))

        def broken(self: LabelDetector, batch: object) -> None:
            raise ValueError("boom")

        monkeypatch.setattr(LabelDetector, "update", broken)
        inbox.send(Observe("m", 1, stream(20, seed=2)))
        statuses = latest(outbox, lambda s: s["labels"].state is DetectorState.FAILED)
        assert statuses["labels"].message == "scoring failed: boom"
        inbox.send(Observe("m", 1, stream(20, seed=3)))
        statuses = latest(outbox, lambda s: s["confidence"].samples_seen == 40)
        assert statuses["confidence"].state is DetectorState.READY
        assert (tmp_path / "m").is_dir()  # calibrations were saved
        inbox.send(Observe("m", 7, stream(20, seed=4)))  # another version's traffic: ignored
        inbox.send(Observe("m", 1, stream(1, seed=5)))
        statuses = latest(outbox, lambda s: s["confidence"].samples_seen == 41)
    finally:
        inbox.send(Stop())
        thread.join(5)
    assert not thread.is_alive()
