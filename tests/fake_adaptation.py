"""An in-memory AdaptationCore and an in-process gRPC server on it, for the api and CLI tests.

The fake keeps the core's contract (errors, idempotency, one active job, rollback rules, events
from now on) with none of its machinery, so the tests exercise the gRPC surface alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncGenerator, Coroutine
from typing import Any, TypeVar

from service.api import GrpcServer, build_server
from service.domain.int8 import Int8Check
from service.domain.loop import (
    CANCELLED_BY,
    AddOutcome,
    Event,
    EventKind,
    GateResult,
    Job,
    JobState,
    ModelStatus,
    NewSample,
    PurgeOutcome,
    Sample,
    SourceSummary,
    VersionSummary,
)
from service.drift import Candidate, DetectorState, DetectorStatus, DriftStatus
from service.errors import AlreadyEnded, InvalidInput, NotFound
from service.inference import InferenceService
from service.metrics import Metrics

T = TypeVar("T")
MODEL = "support-intents"
OTHER_MODEL = "billing-intents"
LABELS = ["billing", "shipping", "other"]
CREATED = 1_714_557_600.0  # 2024-05-01 10:00 UTC

DRIFT = DriftStatus(
    model=MODEL,
    version=3,
    alarm=True,
    detectors=[
        DetectorStatus(
            MODEL,
            "confidence",
            "ks",
            3,
            DetectorState.CALIBRATING,
            reference_source="traffic",
            message="collecting traffic reference: 12/1000",
        ),
        DetectorStatus(
            MODEL,
            "embedding",
            "ks",
            3,
            DetectorState.READY,
            statistic=9.5,
            threshold=2.3,
            drift_detected=True,
            alarm=True,
            alarm_since=CREATED + 60,
            samples_seen=4200,
            reference_source="traffic",
            reference_size=1000,
            calibration_seconds=0.5,
            effect=0.42,
            min_effect=0.1,
        ),
    ],
    samples_dropped=7,
    estimated_accuracy=0.83,
    false_alarm_every_hours=168.0,
    traffic_rate=12.5,
)
CANDIDATES = [
    Candidate("req-9", "where is my parcel, it's late", 3, "shipping", 0.41, 3.2, 0.97),
    Candidate("", "hello?", 3, "other", 0.55, float("nan"), 0.61),
]

REJECTING_GATE = GateResult(
    candidate_new=0.93,
    incumbent_new=0.71,
    candidate_anchor=0.80,
    incumbent_anchor=0.88,
    new_examples=40,
    anchor_examples=200,
    promote=False,
    reason="forgetting 0.080 exceeds 0.020",
)


def initial_versions() -> list[VersionSummary]:
    return [
        VersionSummary(
            model=MODEL,
            version=1,
            parent=None,
            created="2024-05-01T10:00:00+00:00",
            status="promoted",
            reason="initial version from seed data",
            samples_upto=0,
            metrics={"validation_accuracy": 0.81, "parity_max_abs_diff": 2.5e-6},
            serving_file="model.int8.onnx",
            int8=Int8Check.measured(0.81, 0.80, rows=40, split="validation", max_drop=0.01),
        ),
        VersionSummary(
            model=MODEL,
            version=2,
            parent=1,
            created="2024-05-02T10:00:00+00:00",
            status="serving",
            reason="120 new samples",
            samples_upto=120,
            # Only the flat numbers travel: not the nested, textual, boolean or missing ones.
            metrics={
                "validation_accuracy": 0.9,
                "train_examples": 96,
                "train": {"epochs": 2},
                "note": "fine",
                "int8": True,
                "missing": None,
            },
            int8=Int8Check.measured(0.9, 0.85, rows=60, split="holdout+anchor", max_drop=0.01),
        ),
        VersionSummary(
            model=MODEL,
            version=3,
            parent=2,
            created="2024-05-03T10:00:00+00:00",
            status="rejected",
            reason=REJECTING_GATE.reason,
            samples_upto=160,
            metrics={},
        ),
    ]


def initial_samples() -> list[Sample]:
    """Stored samples with their provenance: ``labeler`` before version 2's data window closed
    (seq 120) and after, ``junk`` inside it (seqs 101-102, an hour apart), one from before
    sources were recorded."""

    def sample(seq: int, source: str, created: float, label: str = "billing") -> Sample:
        return Sample(MODEL, f"p{seq}", f"text {seq}", label, "", created, seq, source)

    return [
        sample(1, "", CREATED - 86_400),
        sample(2, "labeler", CREATED + 10),
        sample(3, "labeler", CREATED + 20, "shipping"),
        sample(101, "junk", CREATED + 3600, "other"),
        sample(102, "junk", CREATED + 7200, "other"),
        sample(150, "labeler", CREATED + 7300),
    ]


def finished_job() -> Job:
    return Job(
        id="job-1",
        model=MODEL,
        state=JobState.REJECTED,
        trigger="samples",
        reason="40 new samples",
        base_version=2,
        samples_upto=160,
        created=CREATED,
        started=CREATED + 1.5,
        finished=CREATED + 60.25,
        candidate_version=3,
        gate=REJECTING_GATE,
        attempt=2,
    )


class FakeAdaptationCore:
    def __init__(self) -> None:
        self.models = [MODEL]  # what ListModels answers
        self.samples: dict[str, NewSample] = {}
        self.stored = initial_samples()  # with provenance, for ListSampleSources / PurgeSamples
        self.ever: list[Sample] = []  # purged samples, as the records of versions keep them
        self.purges: list[tuple[str, str, float | None]] = []  # what purge_samples received
        self.batches: list[list[NewSample]] = []  # what add_samples received, call by call
        self.versions = initial_versions()
        self.jobs: dict[str, Job] = {"job-1": finished_job()}
        self.needs_adaptation = True
        self.backoff_until: float | None = CREATED + 3600
        self.fail_watch: BaseException | None = None
        self._watchers: list[tuple[str, asyncio.Queue[Event | BaseException]]] = []
        self.watching = threading.Event()  # set when a watcher subscribed
        self.unwatched = threading.Event()  # set when a watcher unsubscribed

    async def list_models(self) -> list[str]:
        return sorted(self.models)

    def _check_model(self, model: str) -> None:
        if model not in self.models:
            served = ", ".join(repr(name) for name in self.models)
            raise NotFound(f"unknown model {model!r}; this server adapts {served}")

    async def add_samples(self, model: str, samples: list[NewSample], *, caller: str) -> AddOutcome:
        self._check_model(model)
        self.batches.append(list(samples))
        for i, sample in enumerate(samples):
            if not sample.text.strip():
                raise InvalidInput(f"sample {i}: text is empty")
            if sample.label not in LABELS:
                raise InvalidInput(
                    f"sample {i}: unknown label {sample.label!r}; labels are {', '.join(LABELS)}"
                )
            stored = self.samples.get(sample.id)
            if stored is not None and (stored.text, stored.label) != (sample.text, sample.label):
                raise InvalidInput(f"sample id {sample.id!r} is stored with another text or label")
        accepted = duplicates = 0
        ids = []
        for sample in samples:
            if sample.id and sample.id in self.samples:
                duplicates += 1
                ids.append(sample.id)
                continue
            sample_id = sample.id or f"s{len(self.samples) + 1}"
            self.samples[sample_id] = dataclasses.replace(sample, id=sample_id)
            seq = max((s.seq for s in self.stored), default=0) + 1
            self.stored.append(
                Sample(
                    model,
                    sample_id,
                    sample.text,
                    sample.label,
                    sample.prediction_id,
                    time.time(),
                    seq,
                    caller,
                )
            )
            accepted += 1
            ids.append(sample_id)
        self.publish(
            Event(EventKind.SAMPLES_ACCEPTED, model, time.time(), f"{accepted} samples accepted")
        )
        return AddOutcome(accepted, duplicates, ids)

    async def sample_sources(self, model: str) -> list[SourceSummary]:
        self._check_model(model)
        by_source: dict[str, list[Sample]] = {}
        for sample in self.stored:
            if sample.model == model:
                by_source.setdefault(sample.source, []).append(sample)
        return [
            SourceSummary(
                source,
                len(group),
                min(s.created for s in group),
                max(s.created for s in group),
                min(s.seq for s in group),
                max(s.seq for s in group),
            )
            for source, group in sorted(by_source.items())
        ]

    async def purge_samples(self, model: str, source: str, since: float | None) -> PurgeOutcome:
        """As the core does: delete, then name the fine-tuned versions whose data included the
        source's samples (here: every sample ever stored up to their ``samples_upto``), the same
        when repeated."""
        self._check_model(model)
        self.purges.append((model, source, since))

        def matches(s: Sample) -> bool:
            return s.model == model and s.source == source and (since is None or s.created >= since)

        purged = [s for s in self.stored if matches(s)]
        self.stored = [s for s in self.stored if s not in purged]
        self.ever += [s for s in purged if s not in self.ever]
        reached = [s.seq for s in self.ever if matches(s)]
        versions = [
            v.version
            for v in self.versions
            if v.parent is not None and any(seq <= v.samples_upto for seq in reached)
        ]
        if not purged:
            return PurgeOutcome(model, source, 0, 0, 0, versions)
        first, last = min(s.seq for s in purged), max(s.seq for s in purged)
        message = f"{len(purged)} samples of source {source} purged"
        self.publish(
            Event(EventKind.SAMPLES_PURGED, model, time.time(), message, {"source": source})
        )
        return PurgeOutcome(model, source, len(purged), first, last, versions)

    async def drift_status(self, model: str) -> DriftStatus:
        self._check_model(model)
        return DRIFT

    async def labeling_candidates(self, model: str, count: int) -> list[Candidate]:
        self._check_model(model)
        if not 0 <= count <= 1000:
            raise InvalidInput(f"count must be in [0, 1000] (0 means 20), got {count}")
        return CANDIDATES[: count or 20]

    async def list_versions(self, model: str) -> list[VersionSummary]:
        self._check_model(model)
        return list(self.versions)

    async def model_status(self, model: str) -> ModelStatus:
        self._check_model(model)
        latest = max(self.jobs.values(), key=lambda j: j.created, default=None)
        gated = [j for j in self.jobs.values() if j.gate is not None]
        return ModelStatus(
            model=model,
            serving_version=self._serving().version,
            samples_since_version=len(self.samples),
            labels=list(LABELS),
            job=latest,
            last_gate=max(gated, key=lambda j: j.created).gate if gated else None,
            needs_adaptation=self.needs_adaptation,
            backoff_until=self.backoff_until,
        )

    async def start_fine_tune(self, model: str, reason: str) -> Job:
        self._check_model(model)
        for job in self.jobs.values():
            if job.model == model and not job.state.finished:
                return job
        job = Job(
            id=f"job-{len(self.jobs) + 1}",
            model=model,
            state=JobState.QUEUED,
            trigger="manual",
            reason=reason,
            base_version=self._serving().version,
            samples_upto=160 + len(self.samples),
            created=time.time(),
        )
        self.jobs[job.id] = job
        return job

    async def get_job(self, job_id: str) -> Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise NotFound(f"no job {job_id!r}") from None

    async def cancel_job(self, model: str, job_id: str, *, caller: str) -> Job:
        """A queued job fails at once; a running one is marked, as if another process ran it."""
        self._check_model(model)
        job = await self.get_job(job_id)
        if job.state.finished:
            raise AlreadyEnded(
                f"job {job_id} of {model!r} has already ended ({job.state.value}); "
                "there is nothing to cancel"
            )
        error = CANCELLED_BY + caller
        if job.state is JobState.QUEUED:
            job = dataclasses.replace(job, state=JobState.FAILED, finished=time.time(), error=error)
        else:
            job = dataclasses.replace(job, error=error)
        self.jobs[job_id] = job
        return job

    async def rollback(self, model: str, version: int) -> VersionSummary:
        self._check_model(model)
        target = next((v for v in self.versions if v.version == version), None)
        if target is None:
            raise NotFound(f"{model} has no version {version}")
        if target.status != "promoted":
            raise InvalidInput(
                f"version {version} is {target.status}; only an earlier promoted version can "
                "serve again"
            )
        self.versions = [
            dataclasses.replace(
                v,
                status="serving"
                if v.version == version
                else "promoted"
                if v.status == "serving"
                else v.status,
            )
            for v in self.versions
        ]
        return self._serving()

    async def approve_version(self, model: str, version: int, *, caller: str) -> VersionSummary:
        target = self._pending(model, version)
        reason = f"{target.reason}; approved by {caller}"  # the decision, as the core records it
        self.versions = [
            dataclasses.replace(v, status="serving", reason=reason)
            if v.version == target.version
            else dataclasses.replace(v, status="promoted")
            if v.status == "serving"
            else v
            for v in self.versions
        ]
        return self._serving()

    async def reject_version(self, model: str, version: int, *, caller: str) -> VersionSummary:
        target = self._pending(model, version)
        reason = f"{target.reason}; rejected by {caller} on review"
        target = dataclasses.replace(target, status="rejected", reason=reason)
        self.versions = [target if v.version == version else v for v in self.versions]
        return target

    def _pending(self, model: str, version: int) -> VersionSummary:
        self._check_model(model)
        target = next((v for v in self.versions if v.version == version), None)
        if target is None:
            raise NotFound(f"{model} has no version {version}")
        if target.status != "pending":
            raise InvalidInput(f"version {version} of {model!r} does not wait for review")
        return target

    def _serving(self) -> VersionSummary:
        return next(v for v in self.versions if v.status == "serving")

    def watch_events(self, model: str) -> AsyncGenerator[Event, None]:
        # As the real core does: an unknown model raises at the call, the rest when iterated.
        if model:
            self._check_model(model)
        return self._subscribe(model)

    async def _subscribe(self, model: str) -> AsyncGenerator[Event, None]:
        if self.fail_watch is not None:
            raise self.fail_watch
        queue: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        entry = (model, queue)
        self._watchers.append(entry)
        self.watching.set()
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._watchers.remove(entry)
            self.unwatched.set()

    def publish(self, item: Event | BaseException) -> None:
        """On the server's loop: an event to the watchers of its model, an error to all."""
        for model, queue in self._watchers:
            if isinstance(item, BaseException) or not model or model == item.model:
                queue.put_nowait(item)

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)


class FakeServer:
    """The api server on a FakeAdaptationCore, its event loop in a background thread."""

    def __init__(self, core: FakeAdaptationCore, with_adaptation: bool = True) -> None:
        self.core = core
        self.metrics = Metrics()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.grpc: GrpcServer = self.run(self._start(with_adaptation))
        self.address = f"127.0.0.1:{self.grpc.port}"

    async def _start(self, with_adaptation: bool) -> GrpcServer:
        server = build_server(
            InferenceService({}),
            self.metrics,
            "127.0.0.1",
            0,
            adaptation=self.core if with_adaptation else None,
        )
        await server.server.start()
        await server.set_serving(True)
        return server

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def publish(self, item: Event | BaseException) -> None:
        self.loop.call_soon_threadsafe(self.core.publish, item)

    def grpc_requests(self, method: str, code: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "loopserve_grpc_requests_total", {"method": method, "code": code}
        )
        return value or 0.0

    def stop(self) -> None:
        self.run(self.grpc.server.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
