"""A purge cannot race a job: the real AdaptationService and JobRunner (spec writing, the data
record, publishing, the head move) with only the job process faked.

The fake process waits until the test opens its gate, then writes a candidate into the staging
directory and reports a gate that promotes. The head is the ``current`` file behind the SQLite
store's publish fence, as in a single-process server.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import ADAPTATION, TINY_MODEL, shifted, write_tiny_definition
from test_job_races import LABELS, MODEL, FakeServed
from waiting import wait_for

from service.adaptation.events import EventBus
from service.adaptation.jobs import JobRunner
from service.adaptation.loop import AdaptationService
from service.adaptation.predictions import PredictionLog
from service.api.adaptation_client import AdaptationClient
from service.cluster import LeaseHeadPointer
from service.config import AdaptationRecipe, ServingOptions, TrainRecipe
from service.domain.finetune import FineTuneResult, FineTuneSpec
from service.domain.gate import GateThresholds
from service.domain.loop import GateResult, Job, JobState, NewSample, PurgeOutcome
from service.domain.review import LabelChange, ReviewEvidence
from service.domain.versions import VersionMeta
from service.errors import DataPurged, NotFound
from service.metrics import Metrics
from service.registry import Head, ModelRegistry
from service.store import PostgresStore, SQLiteStore, Store, TrainerLease

MARKER = "qz7purgemarker"  # in every text the purged source posts
QUOTING = ReviewEvidence(
    trigger=MARKER,
    contradictions=(LabelChange("a", "b", 3, (f"please {MARKER} refund",)),),
    reasons=(f"90% of the contradicting samples contain {MARKER!r}",),
)
PROMOTE = GateResult(0.9, 0.7, 0.85, 0.85, 10, 10, promote=True, reason="better on new data")


class PublishingServed(FakeServed):
    """A served model whose candidates really publish, and a definition complete enough to write
    a spec. The head: the ``current`` file behind the store's publish fence (SQLite, one
    process), or the head row moved over the trainer lease (PostgreSQL), as the app wires them."""

    def __init__(
        self, state_dir: Path, recipe: AdaptationRecipe, store: Store, lease: TrainerLease | None
    ) -> None:
        super().__init__(state_dir, recipe)
        if lease is None:
            self.registry = ModelRegistry(state_dir, MODEL, fence=store.publish_fence)
        else:
            pointer = LeaseHeadPointer(store, lease, MODEL)
            self.registry = ModelRegistry(state_dir, MODEL, pointer=pointer)
            assert store.move_head(MODEL, 1, None)
        seed = state_dir / "seed.csv"
        seed.write_text("text,label\nseed one,a\nseed two,b\n", encoding="utf-8")
        self.definition = SimpleNamespace(
            task="text-classification",
            train=TrainRecipe(),
            adaptation=recipe,
            serving=ServingOptions(),
            gate=GateThresholds(),
            seed_path=seed,
            backbone_path=lambda: state_dir / "backbone",
        )
        self.before_move: Callable[[], None] = lambda: None

    def activate(
        self, version: int, expected: int | Head = Head.AS_READ, job: str = ""
    ) -> SimpleNamespace:
        self.before_move()
        self.registry.set_current(version, expected, job)
        self.serving_version = SimpleNamespace(version=version, labels=LABELS)
        return self.serving_version


class FakeProcess:
    """Stands in for ``JobRunner._run_process``: reads the spec, waits for ``gate``, writes a
    candidate, and promotes it."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.running = threading.Event()
        self.specs: list[FineTuneSpec] = []

    def __call__(self, spec_path: Path, job_dir: Path) -> FineTuneResult:
        """Set on the class, an instance is not bound: it gets no runner."""
        spec = FineTuneSpec.load(spec_path)
        self.specs.append(spec)
        (job_dir / "job.log").write_text(f"job: {len(spec.train)} train rows\n", encoding="utf-8")
        self.running.set()
        assert self.gate.wait(20), "the job was never released"
        (Path(spec.staging_dir) / "model.onnx").write_bytes(b"not really onnx")
        result = FineTuneResult(ok=True, gate=PROMOTE, labels=list(spec.labels))
        result.save(Path(spec.result_path))
        return result


class Loop:
    def __init__(self, state_dir: Path, store: Store, lease: TrainerLease | None = None) -> None:
        recipe = AdaptationRecipe(
            min_new_samples=1_000_000, settle_seconds=0.0, max_retries=0, backoff_seconds=0.0
        )
        self.state_dir = state_dir
        self.store = store
        self.served = PublishingServed(state_dir, recipe, self.store, lease)
        self.service = AdaptationService(
            {MODEL: self.served},
            self.store,
            self.store,
            EventBus(),
            PredictionLog(),
            Metrics(),
            state_dir / "jobs",
        )

    def post(self, source: str, count: int, text: str = "text {i}") -> None:
        samples = [NewSample(text.format(i=i), LABELS[i % 2]) for i in range(count)]
        asyncio.run(self.service.add_samples(MODEL, samples, caller=source))

    def start(self) -> Job:
        return asyncio.run(self.service.start_fine_tune(MODEL, "test"))

    def purge(self, source: str, since: float | None = None) -> PurgeOutcome:
        return asyncio.run(self.service.purge_samples(MODEL, source, since))

    def wait_finished(self, job: Job, timeout: float = 20.0) -> Job:
        done = wait_for(
            lambda: self.store.job(job.id), lambda j: j.state.finished, timeout, "the job"
        )
        self.service.wait_idle(timeout)
        return done


@pytest.fixture
def process(monkeypatch: pytest.MonkeyPatch) -> FakeProcess:
    fake = FakeProcess()
    monkeypatch.setattr(JobRunner, "_run_process", fake)
    return fake


@pytest.fixture
def loop(tmp_path: Path, process: FakeProcess) -> Iterator[Loop]:
    """SQLite: one process, the ``current`` file."""
    state = tmp_path / "state"
    running = Loop(state, SQLiteStore(state / "loopserve.db"))
    yield running
    process.gate.set()
    running.service.stop(5)
    running.store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_loop(
    request: pytest.FixtureRequest, tmp_path: Path, process: FakeProcess
) -> Iterator[Loop]:
    with running_loop(request, tmp_path / "state", process) as running:
        yield running


@contextmanager
def running_loop(
    request: pytest.FixtureRequest, state: Path, process: FakeProcess
) -> Iterator[Loop]:
    """The loop over the store ``request.param`` names; PostgreSQL publishes as the trainer,
    over its lease."""
    if request.param == "sqlite":
        store: Store = SQLiteStore(state / "loopserve.db")
        lease = None
    else:
        store = PostgresStore(request.getfixturevalue("database_url"))
        lease = store.trainer_lease()
        assert lease.try_acquire()
    running = Loop(state, store, lease)
    yield running
    process.gate.set()
    running.service.stop(5)
    if lease is not None:
        lease.close()
    store.close()


def test_a_purge_during_a_running_job_names_it_and_its_candidate_never_serves(
    any_loop: Loop, process: FakeProcess
) -> None:
    loop = any_loop
    loop.post("team", 20)
    loop.post("labeler", 30, text="label me {i}")
    job = loop.start()
    assert process.running.wait(10)
    assert loop.store.job(job.id).data is not None  # recorded before the process started

    outcome = loop.purge("labeler")
    assert (outcome.removed, outcome.versions) == (30, [])
    assert [(j.id, j.state) for j in outcome.jobs] == [(job.id, JobState.RUNNING)]
    process.gate.set()
    done = loop.wait_finished(job)

    assert done.state is JobState.FAILED and done.candidate_version is None
    assert done.error == (
        f"cancelled: 30 samples of source 'labeler' (seq 21..50) were purged after job {job.id} "
        "read its data; its candidate is not published"
    )
    assert [v.version for v in loop.served.registry.versions()] == [1]  # never published
    assert loop.served.registry.current().version == 1
    # Repeated, the purge removes nothing and names the same job.
    again = loop.purge("labeler")
    assert (again.removed, again.versions) == (0, [])
    assert [(j.id, j.state) for j in again.jobs] == [(job.id, JobState.FAILED)]
    # The team's samples were not purged and the job did not train on anything else.
    assert loop.purge("team").jobs[0].id == job.id


def test_a_purge_through_another_process_stops_the_job_at_the_next_poll(
    any_loop: Loop, process: FakeProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = any_loop
    runner: Any = loop.service._runners[MODEL]
    cancelled: list[str] = []
    monkeypatch.setattr(runner, "cancel", lambda job_id: cancelled.append(job_id) or True)
    loop.post("labeler", 30)
    job = loop.start()
    assert process.running.wait(10)
    loop.service.poll()
    assert cancelled == []
    assert loop.store.purge(MODEL, "labeler")[0] == 30  # as a serving replica's purge would
    loop.service.poll()
    assert cancelled == [job.id]
    process.gate.set()
    assert loop.wait_finished(job).error.startswith("cancelled: 30 samples of source 'labeler'")


def test_a_purge_just_before_the_head_moves_is_caught_by_the_move(
    any_loop: Loop, process: FakeProcess
) -> None:
    """The purge commits after the job's last check and before the head move: the move itself
    refuses, the version is marked rejected, and the purge named both the version and the job."""
    loop = any_loop
    loop.post("labeler", 30)
    purges: list[PurgeOutcome] = []

    def purge_in_between() -> None:
        # Another thread, as a PurgeSamples call would come: the fence is not held yet.
        worker = threading.Thread(target=lambda: purges.append(loop.purge("labeler")))
        worker.start()
        worker.join(10)

    loop.served.before_move = purge_in_between
    job = loop.start()
    process.gate.set()
    done = loop.wait_finished(job)

    (outcome,) = purges
    assert done.state is JobState.FAILED and done.candidate_version == 2
    assert "30 samples of source 'labeler'" in done.error
    assert loop.served.registry.current().version == 1
    version = loop.served.registry.get(2)
    assert version.meta.status == "rejected" and version.meta.reason == done.error
    assert (outcome.removed, outcome.versions, [j.id for j in outcome.jobs]) == (30, [2], [job.id])
    again = loop.purge("labeler")
    assert (again.removed, again.versions, [j.id for j in again.jobs]) == (0, [2], [])


def test_a_pending_version_trained_on_purged_samples_is_named_and_cannot_be_approved(
    any_loop: Loop, process: FakeProcess
) -> None:
    loop = any_loop
    loop.post("labeler", 30)
    first = loop.start()
    process.gate.set()
    assert loop.wait_finished(first).state is JobState.PROMOTED
    assert loop.served.serving_version.version == 2
    # No job starts from here on: the row below is written QUEUED first, and a runner would
    # adopt it. An approval still publishes.
    loop.service.stop(5)
    # A later round on the same data whose candidate waits for review (as the review leaves it).
    job = loop.store.create(MODEL, "samples", "later", 2, loop.store.last_seq(MODEL))
    with loop.served.registry.stage(parent=2) as staged:
        (staged.path / "model.onnx").write_bytes(b"pending")
        meta = VersionMeta(
            labels=tuple(LABELS), max_seq_length=32, status="pending", job=job.id,
            trained_on=loop.store.job(first.id).data, review=QUOTING,
        )  # fmt: skip
        pending = loop.served.registry.publish(staged, meta)
    loop.store.update(
        job.id, state=JobState.PENDING, candidate_version=pending.version, data=meta.trained_on
    )

    outcome = loop.purge("labeler")
    assert outcome.versions == [2, pending.version] and outcome.jobs == []
    # Its review evidence no longer quotes the purged samples; the measurements stay.
    assert MARKER.encode() not in (pending.path / "meta.json").read_bytes()
    review = loop.served.registry.get(pending.version).meta.review
    assert review is not None and review.contradictions[0].count == 3
    assert review.reasons == ("90% of the contradicting samples contain a token",)
    with pytest.raises(DataPurged, match="30 samples of source 'labeler'"):
        asyncio.run(loop.service.approve_version(MODEL, pending.version, caller="ops"))
    assert loop.served.registry.current().version == 2
    assert loop.served.registry.get(pending.version).meta.status == "rejected"
    assert loop.store.job(job.id).state is JobState.REJECTED
    assert loop.purge("labeler").versions == [2, pending.version]


def test_no_purged_text_stays_in_the_state_dir(loop: Loop, process: FakeProcess) -> None:
    loop.post("team", 20)
    loop.post("labeler", 30, text=f"please {MARKER} refund {{i}}")
    job = loop.start()
    assert process.running.wait(10)
    spec_file = loop.state_dir / "jobs" / job.id / "spec.json"
    assert MARKER.encode() in spec_file.read_bytes()  # the spec holds them while the job runs
    process.gate.set()
    assert loop.wait_finished(job).state is JobState.PROMOTED
    assert not spec_file.exists() and not spec_file.with_name("result.json").exists()

    assert loop.purge("labeler").removed == 30
    holding = [
        path
        for path in loop.state_dir.rglob("*")
        if path.is_file() and MARKER.encode() in path.read_bytes()
    ]
    assert holding == []
    assert {p.name for p in loop.state_dir.iterdir()} >= {"loopserve.db", "jobs", "models"}


def test_start_up_removes_the_specs_and_results_old_job_dirs_kept(loop: Loop) -> None:
    """An older server kept every job's spec (every text it read); a server that stopped during
    a job left its spec. Recovery removes both, and keeps the logs."""
    loop.post("labeler", 10)
    ended = loop.store.create(MODEL, "manual", "old", 1, loop.store.last_seq(MODEL))
    loop.store.update(ended.id, state=JobState.FAILED, finished=time.time())
    jobs_dir = loop.state_dir / "jobs"
    for name in (ended.id, "job-unknown"):
        (jobs_dir / name).mkdir(parents=True)
        for file in ("spec.json", "result.json", "job.log"):
            (jobs_dir / name / file).write_text(f"{MARKER} text", encoding="utf-8")

    loop.service.recover()
    assert sorted(p.name for p in jobs_dir.rglob("*") if p.is_file()) == ["job.log", "job.log"]


def test_a_version_from_before_data_records_is_named_by_its_samples_upto(loop: Loop) -> None:
    loop.post("labeler", 5)
    with loop.served.registry.stage(parent=1) as staged:
        (staged.path / "model.onnx").write_bytes(b"old")
        old = VersionMeta(labels=tuple(LABELS), max_seq_length=32, samples_upto=3)
        legacy = loop.served.registry.publish(staged, old)

    assert loop.purge("labeler").versions == [legacy.version]  # it may have trained on seq 1..3
    # Without a record, a purge that removes nothing cannot tell.
    assert loop.purge("labeler").versions == []


def test_the_core_records_the_caller_it_is_given(loop: Loop) -> None:
    """A sample's source, and who may undo it, come from the ``caller`` argument alone."""
    loop.post("labeler-eu", 2)
    loop.post("ops", 1, text="ops {i}")
    sources = asyncio.run(loop.service.sample_sources(MODEL))
    assert {s.source: s.samples for s in sources} == {"labeler-eu": 2, "ops": 1}
    first = loop.store.samples(MODEL)[0]
    with pytest.raises(NotFound, match=f"has no sample '{first.id}' posted by 'ops'"):
        asyncio.run(loop.service.delete_sample(MODEL, first.id, caller="ops"))
    deleted = asyncio.run(loop.service.delete_sample(MODEL, first.id, caller="labeler-eu"))
    assert (deleted.id, deleted.source) == (first.id, "labeler-eu")


def test_cancel_ends_the_process_of_the_named_job_only(loop: Loop) -> None:
    runner: Any = loop.service._runners[MODEL]
    process = subprocess.Popen(["sleep", "60"])
    try:
        runner._job_id, runner._process = "job-running", process  # as _run_process sets them
        assert runner.cancel("job-other") is False and process.poll() is None
        assert runner.cancel("job-running") is True
        assert process.wait(10) == -signal.SIGTERM
        assert runner.cancel("job-running") is False  # already ended
    finally:
        runner._job_id, runner._process = None, None
        process.kill()
        process.wait()


@pytest.mark.slow
def test_a_real_job_leaves_no_purged_text_in_the_state_dir(
    tmp_path: Path, tiny_backbone: Path, state_dir: Path, start_app: Callable[..., Any]
) -> None:
    """The whole server and a real job process on the tiny backbone: after the job and a purge,
    no file under the state dir (database, log, jobs, versions, drift) holds a purged text."""
    models = tmp_path / "models"
    extra = ADAPTATION.format(min_new=1000, lr=3e-4, head_lr=0.02, allow_new="false", settle=0)
    write_tiny_definition(models, tiny_backbone, extra_toml=extra)
    server = start_app(models_dir=models)
    rows = [NewSample(f"{text} {MARKER}", label) for text, label in shifted(40, seed=0)]
    with AdaptationClient(server.address) as client:
        assert client.add_samples(TINY_MODEL, rows).accepted == 40
        job = client.start_fine_tune(TINY_MODEL, "purge test")
        job = wait_for(lambda: client.get_job(job.id), lambda j: j.state.finished, 300, "the job")
        assert job.data is not None and [s.samples for s in job.data.sources] == [40]
        outcome = client.purge_samples(TINY_MODEL, "anonymous")
        made = [] if job.candidate_version is None else [job.candidate_version]
        assert (outcome.removed, outcome.versions) == (40, made)
        again = client.purge_samples(TINY_MODEL, "anonymous")
        assert (again.removed, again.versions, again.jobs) == (0, outcome.versions, outcome.jobs)
    holding = [
        str(path.relative_to(state_dir))
        for path in state_dir.rglob("*")
        if path.is_file() and MARKER.encode() in path.read_bytes()
    ]
    assert holding == []
    assert (state_dir / "jobs" / job.id / "job.log").is_file()
