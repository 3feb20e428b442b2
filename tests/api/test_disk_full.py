"""A full disk over gRPC: RESOURCE_EXHAUSTED "disk full", counted, logged once per outage, and
nothing stored is lost. The real api and AdaptationService on a real SQLite store.

SQLite's ``max_page_count`` makes the database refuse to grow, and SQLite then fails writes with
SQLITE_FULL exactly as on a full disk; file writes fail with ENOSPC from a patched ``mkdir``.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
from fake_adaptation import FakeServer

from service.adaptation.events import EventBus
from service.adaptation.jobs import JobRunner
from service.adaptation.loop import AdaptationService
from service.adaptation.predictions import PredictionLog
from service.api._proto.loopserve.v1 import adaptation_pb2 as pb
from service.api._proto.loopserve.v1.adaptation_pb2_grpc import AdaptationStub
from service.config import AdaptationRecipe, ServingOptions
from service.domain.finetune import FineTuneResult
from service.domain.loop import Job, JobState, NewSample
from service.domain.versions import VersionMeta
from service.errors import StorageFull
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.registry._registry import STAGING_PREFIX
from service.store import SQLiteStore
from service.tasks import RequestLimits
from service.tasks.text import TextInputs

MODEL = "tiny"
LABELS = ["a", "b"]
UNLIMITED_PAGES = 1_073_741_823


class FakeServed:
    """What the loop needs of a ServedModel: a registry with version 1 serving, no ONNX."""

    def __init__(self, state_dir: Path) -> None:
        self.name = MODEL
        recipe = AdaptationRecipe(min_new_samples=1000)  # no automatic job
        self.definition = SimpleNamespace(adaptation=recipe, serving=ServingOptions())
        self.registry = ModelRegistry(state_dir, MODEL)
        with self.registry.stage(None) as staged:
            self.registry.publish(staged, VersionMeta(labels=tuple(LABELS), max_seq_length=32))
        self.registry.set_current(1)
        self.serving_version = SimpleNamespace(version=1, labels=LABELS)
        serving = ServingOptions()
        self.inputs = TextInputs(
            RequestLimits(serving.max_texts_per_request, serving.max_text_bytes)
        )


class Loop:
    def __init__(self, state: Path) -> None:
        self.metrics = Metrics()
        self.store = SQLiteStore(state / "loopserve.db")
        self.jobs_dir = state / "jobs"
        self.service = AdaptationService(
            {MODEL: FakeServed(state)},
            self.store, self.store, EventBus(), PredictionLog(), self.metrics, self.jobs_dir,
        )  # fmt: skip

    def fill_up(self) -> None:
        """Let the database grow no more, and use up the room left in the pages it has."""
        assert self.store._conn is not None
        (pages,) = self.store._conn.execute("PRAGMA page_count").fetchone()
        self.store._conn.execute(f"PRAGMA max_page_count = {pages}")
        for n in range(100_000):
            try:
                self.store.add(MODEL, [NewSample(f"filler {n}", LABELS[0], id=f"filler-{n}")])
            except StorageFull:
                break
        for _ in range(100_000):
            try:
                job = self.store.create(MODEL, "manual", "filler", 1, 0)
            except StorageFull:
                break
            # The same length in place: a finished filler never blocks a new job.
            self.store._conn.execute("UPDATE jobs SET state = 'failed' WHERE id = ?", (job.id,))

    def free_space(self) -> None:
        assert self.store._conn is not None
        self.store._conn.execute(f"PRAGMA max_page_count = {UNLIMITED_PAGES}")


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Loop]:
    running = Loop(tmp_path / "state")
    yield running
    running.service.stop(5)
    running.store.close()


@pytest.fixture
def server(loop: Loop) -> Iterator[FakeServer]:
    server = FakeServer(loop.service)
    yield server
    server.stop()


@pytest.fixture
def stub(server: FakeServer) -> Iterator[AdaptationStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield AdaptationStub(channel)


def disk_full_count(metrics: Metrics, operation: str) -> float:
    value = metrics.registry.get_sample_value("loopserve_disk_full_total", {"operation": operation})
    return value or 0.0


def add(stub: AdaptationStub, *ids: str) -> pb.AddSamplesResponse:
    samples = [pb.Sample(text=f"text of {i}", label=LABELS[0], id=i) for i in ids]
    return stub.AddSamples(pb.AddSamplesRequest(model=MODEL, samples=samples), timeout=10)


def disk_full_details(call: object) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
    details: str = info.value.details() or ""
    assert details.startswith("disk full: "), details
    assert "not at once" in details
    return details


def disk_full_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "service.disk_full" and r.levelno >= logging.WARNING
    ]


def test_add_samples_on_a_full_disk_is_resource_exhausted_and_loses_nothing(
    loop: Loop, server: FakeServer, stub: AdaptationStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert add(stub, "a", "b").accepted == 2
    loop.fill_up()
    before = loop.store.count(MODEL)
    for _ in range(3):
        disk_full_details(lambda: add(stub, "late-1", "late-2"))
    assert disk_full_count(server.metrics, "AddSamples") == 3
    assert server.grpc_requests("/loopserve.v1.Adaptation/AddSamples", "RESOURCE_EXHAUSTED") == 3
    # One ERROR for the outage, not one per call; never a traceback.
    assert len(disk_full_errors(caplog)) == 1
    assert not [r for r in caplog.records if r.exc_info]
    # Nothing of the refused batches is stored; the earlier samples are intact.
    assert loop.store.count(MODEL) == before
    assert {"a", "b"} <= {s.id for s in loop.store.samples(MODEL)}
    assert loop.store.sample(MODEL, "late-1") is None

    loop.free_space()
    assert add(stub, "late-1", "late-2").accepted == 2
    assert loop.store.sample(MODEL, "late-1") is not None
    # Full again after it recovered: logged again.
    loop.fill_up()
    disk_full_details(lambda: add(stub, "later"))
    assert len(disk_full_errors(caplog)) == 2


def test_start_fine_tune_on_a_full_disk_is_resource_exhausted(
    loop: Loop, server: FakeServer, stub: AdaptationStub
) -> None:
    add(stub, "a", "b")
    loop.fill_up()
    request = pb.StartFineTuneRequest(model=MODEL, reason="new labels")
    disk_full_details(lambda: stub.StartFineTune(request, timeout=10))
    assert disk_full_count(server.metrics, "StartFineTune") == 1
    assert loop.store.active(MODEL) is None
    loop.free_space()
    assert stub.StartFineTune(request, timeout=10).id


def run_one_job(loop: Loop, stub: AdaptationStub) -> Job:
    """Start a job over gRPC and wait until it has finished."""
    finished = threading.Event()
    ended: list[Job] = []
    runner = loop.service._runners[MODEL]
    previous = runner._on_finished

    def on_finished(job: Job) -> None:
        previous(job)
        ended.append(job)
        finished.set()

    runner._on_finished = on_finished
    add(stub, "a", "b")
    stub.StartFineTune(pb.StartFineTuneRequest(model=MODEL), timeout=10)
    assert finished.wait(20)
    (job,) = ended
    return job


def test_a_job_that_cannot_write_its_files_fails_with_disk_full(
    loop: Loop, stub: AdaptationStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    mkdir = Path.mkdir

    def no_space(path: Path, *args: object, **kwargs: object) -> None:
        if path.parent == loop.jobs_dir:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        mkdir(path, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", no_space)
    job = run_one_job(loop, stub)
    assert job.state is JobState.FAILED
    assert job.error.startswith("disk full: could not store the files of fine-tune job")
    assert disk_full_count(loop.metrics, "fine-tune job") == 1


def test_a_job_process_that_ran_out_of_disk_fails_with_disk_full(
    loop: Loop, stub: AdaptationStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The process's side is in tests/training/test_job_disk_full.py: its result says disk_full.
    out_of_disk = FineTuneResult.failed("OSError: [Errno 28] No space left", disk_full=True)
    monkeypatch.setattr(JobRunner, "_write_spec", lambda self, *args: Path("spec.json"))
    monkeypatch.setattr(JobRunner, "_run_process", lambda self, *args: out_of_disk)
    job = run_one_job(loop, stub)
    assert job.state is JobState.FAILED
    assert job.error == (
        f"disk full: could not store the files of a new version of model {MODEL!r}; nothing of "
        "it was stored. Retry after the operator frees space, not at once"
    )
    assert disk_full_count(loop.metrics, "fine-tune job") == 1
    # The staged files of the version that could not be written are gone.
    root = loop.jobs_dir.parent / "models" / MODEL
    assert (root / "versions").is_dir()
    assert not list(root.glob(f"{STAGING_PREFIX}*"))
