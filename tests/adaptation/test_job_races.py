"""One active job per model under concurrency: the real AdaptationService with a fast fake job.

The fake replaces only the job's work (``JobRunner._execute``: the process, gate and
publication); everything that decides, creates, runs and finishes jobs is the real code. Each
job blocks until the test opens its gate, so a test controls exactly when a job ends.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from fake_adaptation import FakeServer
from grpc import aio
from waiting import wait_until, wait_until_async

from service import tasks
from service.adaptation.events import EventBus
from service.adaptation.jobs import (
    PROCESS_FILE,
    JobRunner,
    end_recorded_process,
    record_process,
)
from service.adaptation.loop import INTERRUPTED, AdaptationService
from service.adaptation.predictions import PredictionLog
from service.api._proto.loopserve.v1 import adaptation_pb2 as pb
from service.api._proto.loopserve.v1.adaptation_pb2_grpc import AdaptationStub
from service.config import AdaptationRecipe, ServingOptions
from service.domain.loop import Job, JobState, NewSample
from service.domain.versions import VersionMeta
from service.errors import Unavailable
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.security import ANONYMOUS
from service.store import SQLiteStore
from service.tasks import RequestLimits
from service.tasks.text import TextInputs

MODEL = "racy"
LABELS = ["a", "b"]
UNFINISHED = (JobState.QUEUED, JobState.RUNNING)


class FakeServed:
    """What the loop needs of a ServedModel: a registry with version 1 serving, no ONNX."""

    def __init__(self, state_dir: Path, recipe: AdaptationRecipe) -> None:
        self.name = MODEL
        self.definition = SimpleNamespace(adaptation=recipe, serving=ServingOptions())
        self.registry = ModelRegistry(state_dir, MODEL)
        with self.registry.stage(None) as staged:
            self.registry.publish(staged, VersionMeta(labels=tuple(LABELS), max_seq_length=32))
        self.registry.set_current(1)
        self.serving_version = SimpleNamespace(version=1, labels=LABELS)
        serving = ServingOptions()
        self.task = tasks.get("text-classification")
        self.inputs = TextInputs(
            RequestLimits(serving.max_texts_per_request, serving.max_text_bytes)
        )


class SlowEndStore(SQLiteStore):
    """Lingers after writing a job's final state: widens the moment a job ends, when the old
    code had a finished row but a runner still busy."""

    def update(self, job_id: str, **changes: Any) -> Job:
        job = super().update(job_id, **changes)
        if job.state.finished and "state" in changes:
            time.sleep(0.1)
        return job


class GatedJobs:
    """Job k (in start order) runs until ``gate(k)`` is opened, then ends PROMOTED."""

    def __init__(self) -> None:
        self._gates: list[threading.Event] = [threading.Event() for _ in range(10)]
        self._started = 0
        self._lock = threading.Lock()
        self.running = threading.Event()

    def gate(self, k: int) -> threading.Event:
        return self._gates[k]

    def execute(self, job: Job) -> JobState:
        """Stands in for ``JobRunner._execute`` (set on the class, called as ``self._execute``:
        a bound method is not rebound, so it gets the job only)."""
        with self._lock:
            k, self._started = self._started, self._started + 1
        self.running.set()
        assert self._gates[k].wait(20), f"job {k} was never released"
        return JobState.PROMOTED


class Loop:
    def __init__(self, tmp_path: Path, recipe: AdaptationRecipe) -> None:
        self.served = FakeServed(tmp_path / "state", recipe)
        self.store = SlowEndStore(tmp_path / "state" / "loopserve.db")
        self.service = AdaptationService(
            {MODEL: self.served},
            self.store,
            self.store,
            EventBus(),
            PredictionLog(),
            Metrics(),
            tmp_path / "state" / "jobs",
        )

    def post(self, count: int, start: int = 0) -> None:
        samples = [NewSample(f"text {i}", LABELS[i % 2]) for i in range(start, start + count)]
        asyncio.run(self.service.add_samples(MODEL, samples, caller=ANONYMOUS))

    def jobs(self) -> list[Job]:
        return self.store.recent(MODEL, limit=1000)

    def wait_until_no_active_job(self, timeout: float = 10.0) -> None:
        wait_until(lambda: not any(j.state in UNFINISHED for j in self.jobs()), timeout, self.jobs)


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> GatedJobs:
    jobs = GatedJobs()
    monkeypatch.setattr(JobRunner, "_execute", jobs.execute)
    return jobs


@pytest.fixture
def loop(tmp_path: Path, gated: GatedJobs) -> Iterator[Loop]:
    # Labels trigger a job at 50 beyond the serving version's and the last job's data; a failed
    # job is not retried and its backoff is over at once.
    recipe = AdaptationRecipe(
        min_new_samples=50, settle_seconds=0.0, max_retries=0, backoff_seconds=0.0
    )
    running = Loop(tmp_path, recipe)
    yield running
    for k in range(10):
        gated.gate(k).set()
    running.service.stop(5)
    running.store.close()


def end_first_job_during(loop: Loop, gated: GatedJobs, calls: int) -> tuple[Job, list[object]]:
    """Start job 0, then open its gate while ``calls`` StartFineTune calls arrive spread over its
    end; the last few wait until it has ended, so that some certainly come after."""
    loop.post(10)
    first = asyncio.run(loop.service.start_fine_tune(MODEL, "first"))
    assert gated.running.wait(5)

    async def call(i: int) -> Job:
        if i >= calls - 3:
            await wait_until_async(lambda: loop.store.job(first.id).state not in UNFINISHED)
        else:
            await asyncio.sleep(i * 0.01)  # the calls' arrivals, spread over the job's end
        return await loop.service.start_fine_tune(MODEL, f"call {i}")

    async def burst() -> list[object]:
        gated.gate(0).set()
        return list(await asyncio.gather(*(call(i) for i in range(calls)), return_exceptions=True))

    return first, asyncio.run(burst())


def test_concurrent_start_fine_tune_while_a_job_ends_starts_exactly_one_job(
    loop: Loop, gated: GatedJobs
) -> None:
    first, results = end_first_job_during(loop, gated, calls=20)

    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    jobs = loop.jobs()
    assert len(jobs) == 2, jobs  # the first one and exactly one more
    second = jobs[0]
    assert {r.id for r in results if isinstance(r, Job)} <= {first.id, second.id}
    assert second.trigger == "manual" and second.state in UNFINISHED
    assert loop.store.job(first.id).state is JobState.PROMOTED

    gated.gate(1).set()
    loop.wait_until_no_active_job()
    assert all(j.state.finished for j in loop.jobs())
    # The loop still works: enough labels beyond the last job's start a label-triggered job.
    gated.gate(2).set()
    loop.post(50, start=10)
    loop.wait_until_no_active_job()
    latest = loop.store.latest(MODEL)
    assert latest is not None and latest.trigger == "samples"
    assert latest.state is JobState.PROMOTED and len(loop.jobs()) == 3


def test_concurrent_start_fine_tune_over_grpc_never_answers_internal(
    loop: Loop, gated: GatedJobs
) -> None:
    server = FakeServer(loop.service)
    try:
        loop.post(10)

        async def burst() -> list[object]:
            async with aio.insecure_channel(server.address) as channel:
                stub = AdaptationStub(channel)
                request = pb.StartFineTuneRequest(model=MODEL, reason="burst")
                first = await stub.StartFineTune(request, timeout=10)
                gated.gate(0).set()  # the first job ends while the others arrive
                rest = await asyncio.gather(
                    *(stub.StartFineTune(request, timeout=10) for _ in range(19)),
                    return_exceptions=True,
                )
                return [first, *rest]

        results = asyncio.run(burst())
    finally:
        server.stop()

    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    assert {r.id for r in results} <= {j.id for j in loop.jobs()}
    assert 1 <= len(loop.jobs()) <= 2
    assert sum(j.state in UNFINISHED for j in loop.jobs()) <= 1
    gated.gate(1).set()
    loop.wait_until_no_active_job()


def test_a_queued_row_is_adopted_and_does_not_block_the_loop(loop: Loop, gated: GatedJobs) -> None:
    # A queued row is a job requested where no runner was (a serving replica's StartFineTune,
    # or a server that stopped first): the runner adopts it rather than starting another.
    loop.post(10)
    queued = loop.store.create(MODEL, "manual", "queued by a replica", 1, 10)

    job = asyncio.run(loop.service.start_fine_tune(MODEL, "now"))

    assert job.id == queued.id
    gated.gate(0).set()
    loop.wait_until_no_active_job()
    gated.gate(1).set()
    loop.post(50, start=10)  # min_new_samples beyond the adopted job's data
    loop.wait_until_no_active_job()
    latest = loop.store.latest(MODEL)
    assert latest is not None and latest.trigger == "samples"


def test_a_queued_row_is_run_when_labels_arrive(loop: Loop, gated: GatedJobs) -> None:
    queued = loop.store.create(MODEL, "manual", "queued by a replica", 1, 0)
    gated.gate(0).set()
    gated.gate(1).set()

    loop.post(50)
    loop.wait_until_no_active_job()

    assert loop.store.job(queued.id).state is JobState.PROMOTED
    assert all(job.state.finished for job in loop.jobs())


def test_a_job_whose_thread_cannot_start_leaves_no_unfinished_row(
    loop: Loop, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = loop.service._runners[MODEL]

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as patch:
        patch.setattr(threading.Thread, "start", refuse)
        with pytest.raises(RuntimeError, match="can't start new thread"):
            runner.try_start(lambda: loop.store.create(MODEL, "manual", "no threads left", 1, 0))

    (job,) = loop.jobs()
    assert job.state is JobState.FAILED and job.error == "the job could not be started"
    assert not runner.busy and runner.active_job() is None


def test_stop_refuses_new_jobs_as_unavailable(loop: Loop) -> None:
    loop.post(10)
    loop.service.stop(1)

    with pytest.raises(Unavailable, match="server is shutting down; no new fine-tune jobs"):
        asyncio.run(loop.service.start_fine_tune(MODEL, "too late"))

    assert loop.jobs() == []


# --- recovery after a crash ---------------------------------------------------------------------


def sleeper() -> subprocess.Popen[bytes]:
    """A stand-in for a job process that outlived its server: in its own session, like a job."""
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )


def crashed(tmp_path: Path, **row: Any) -> tuple[Loop, Job]:
    """A loop (one retry allowed) whose store holds a job that a server which died left
    running; ``row``: more fields of that job's row."""
    loop = Loop(tmp_path, AdaptationRecipe(min_new_samples=1000, settle_seconds=0.0, max_retries=1))
    loop.post(10)
    job = loop.store.create(MODEL, "manual", "before the crash", 1, 10)
    loop.store.update(job.id, state=JobState.RUNNING, started=time.time(), **row)
    return loop, job


def test_recover_ends_a_leftover_job_process_removes_staging_and_retries(
    tmp_path: Path, gated: GatedJobs
) -> None:
    loop, crashed_job = crashed(tmp_path)
    try:
        job_dir = tmp_path / "state" / "jobs" / crashed_job.id
        job_dir.mkdir(parents=True)
        process = sleeper()
        record_process(job_dir, process.pid)
        stale = loop.served.registry.root / "staging-crashed"
        stale.mkdir()
        (stale / "model.onnx").write_bytes(b"x" * 1000)
        gated.gate(0).set()

        loop.service.recover()

        assert process.wait(10) == -signal.SIGKILL
        assert not stale.exists()
        failed = loop.store.job(crashed_job.id)
        assert failed.state is JobState.FAILED and failed.error == INTERRUPTED
        loop.wait_until_no_active_job()
        retry = loop.store.latest(MODEL)
        assert retry is not None and retry.trigger == "retry" and retry.attempt == 2
        assert retry.state is JobState.PROMOTED
    finally:
        loop.service.stop(5)
        loop.store.close()


def test_recover_keeps_a_cancellation_that_came_before_the_crash_and_does_not_retry(
    tmp_path: Path,
) -> None:
    # An operator's cancellation is stored before the process is ended; then the server died.
    loop, job = crashed(tmp_path, error="cancelled by ops")
    try:
        loop.service.recover()

        failed = loop.store.job(job.id)
        assert (failed.state, failed.error, failed.cancelled) == (
            JobState.FAILED, "cancelled by ops", True,
        )  # fmt: skip
        assert loop.store.latest(MODEL) == failed  # not retried, though one retry is allowed
    finally:
        loop.service.stop(5)
        loop.store.close()


def test_recover_leaves_a_process_that_only_reuses_the_recorded_pid(tmp_path: Path) -> None:
    process = sleeper()
    try:
        record_process(tmp_path, process.pid)
        record = (tmp_path / PROCESS_FILE).read_text()
        # The same pid with another start time is another process: it must survive.
        (tmp_path / PROCESS_FILE).write_text(record.replace('"start": ', '"start": 1'))
        assert end_recorded_process(tmp_path) is False
        assert process.poll() is None
        (tmp_path / PROCESS_FILE).write_text(record)
        assert end_recorded_process(tmp_path) is True
        assert process.wait(10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def test_invalid_start_fine_tune_is_refused_with_a_short_message(loop: Loop) -> None:
    server = FakeServer(loop.service)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = AdaptationStub(channel)
            for request, message in (
                (pb.StartFineTuneRequest(model="m" * 100_000), "model name 'mmm"),
                (pb.StartFineTuneRequest(model=MODEL, reason="r" * 100_000), "reason 'rrr"),
            ):
                with pytest.raises(grpc.RpcError) as info:
                    stub.StartFineTune(request, timeout=10)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                details = info.value.details() or ""
                assert message in details and "(100000 characters)" in details
                assert len(details) < 300, details
            with pytest.raises(grpc.RpcError) as info:
                stub.GetJob(pb.GetJobRequest(job_id="j" * 100_000), timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "job id 'jjj" in (info.value.details() or "")
            assert len(info.value.details() or "") < 300
    finally:
        server.stop()


def test_start_fine_tune_without_new_samples_is_refused(loop: Loop) -> None:
    server = FakeServer(loop.service)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = AdaptationStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.StartFineTune(pb.StartFineTuneRequest(model=MODEL), timeout=10)
    finally:
        server.stop()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (
        f"model '{MODEL}' has no labeled samples newer than version 1; post labels first"
    )
    assert loop.jobs() == []
