"""The closed-loop core behind ``loopserve.v1.Adaptation``: samples in, jobs, promotion, rollback."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from pathlib import Path

from service.adaptation._marks import MemoryMarks
from service.adaptation._online import OnlineAccuracy
from service.adaptation._validation import validate_samples
from service.adaptation.events import EventBus
from service.adaptation.jobs import JobRunner, discard_specs, end_recorded_process
from service.adaptation.policy import PolicyInput, TriggerPolicy
from service.adaptation.predictions import PredictionLog
from service.domain.loop import (
    CANCELLED_BY,
    MAX_REASON_CHARS,
    AddOutcome,
    Event,
    EventKind,
    Job,
    JobState,
    ModelStatus,
    NewSample,
    PurgeOutcome,
    Sample,
    SourceSummary,
    VersionSummary,
)
from service.drift import Candidate, DetectorStatus, DriftMonitor, DriftStatus
from service.errors import (
    AlreadyEnded,
    Conflict,
    DataPurged,
    InvalidInput,
    NotFound,
    Unavailable,
    check_length,
    quote,
)
from service.metrics import Metrics
from service.registry import VersionInfo
from service.runtime import LoadedVersion
from service.serving import ServedModel
from service.store import AdaptationMark, JobStore, MarkStore, SampleStore

log = logging.getLogger(__name__)
MAX_CANDIDATES = 1000
DEFAULT_CANDIDATES = 20
INTERRUPTED = "interrupted: the server stopped while the job ran"
ABANDONED = "abandoned: no job runner took the job, so it never started"
CANCEL_WAIT_S = 10.0  # how long a cancel waits for a job ended here to be recorded ended


class AdaptationService:
    def __init__(
        self,
        models: Mapping[str, ServedModel],
        samples: SampleStore,
        jobs: JobStore,
        events: EventBus,
        predictions: PredictionLog,
        metrics: Metrics,
        work_dir: Path,
        drift: DriftMonitor | None = None,
        *,
        marks: MarkStore | None = None,
        replica: str = "local",
        runs_jobs: bool = True,
        may_run_jobs: Callable[[], bool] = lambda: True,
        trusted: Callable[[str], bool] = lambda source: False,
    ) -> None:
        self._models = dict(models)
        # Drift alarms are marks in the store, so that an alarm raised on any serving replica
        # reaches the trainer; ``replica`` names this process's own mark.
        self._marks: MarkStore = marks if marks is not None else MemoryMarks()
        self._replica = replica
        # A serving replica never runs jobs; a trainer runs them only while it holds the lease
        # (``may_run_jobs``). Either way, a requested job is a queued row the trainer adopts.
        self._runs_jobs = runs_jobs
        self._may_run_jobs = may_run_jobs
        self._drift = drift
        self._samples = samples
        self._jobs = jobs
        self._events = events
        self._metrics = metrics
        self._work_dir = work_dir
        for name in self._models:  # so that rate() and increase() see each outcome's first job
            for outcome in ("promoted", "rejected", "failed", "pending"):
                metrics.jobs.labels(name, outcome)
            metrics.pending_verdicts.labels(name)
            metrics.pending_versions.labels(name).set(_pending_count(self._models[name]))
        self.on_labeled: Callable[[str, set[str]], None] | None = None
        self._policies = {
            name: TriggerPolicy(m.definition.adaptation) for name, m in self._models.items()
        }
        self._runners = {name: self._runner(m, trusted) for name, m in self._models.items()}
        # Every job starts under this lock, after checking the model's runner for an active job:
        # the only way a second job, or a row no runner owns, could come about.
        self._trigger_lock = threading.Lock()
        # Settling (see policy): when labels last arrived, since when a job is due, and the timer
        # that looks again once the labels have gone quiet. Monotonic seconds.
        self._last_label: dict[str, float] = {}
        self._due_since: dict[str, float] = {}
        self._settle_timers: dict[str, threading.Timer] = {}
        self._stopping = False
        # (model, version) -> (labeled, correct): delayed-label counts behind online accuracy.
        self._online = OnlineAccuracy(predictions, metrics)

    def _runner(self, served: ServedModel, trusted: Callable[[str], bool]) -> JobRunner:
        return JobRunner(
            served, self._samples, self._jobs, self._events, self._metrics, self._work_dir,
            on_finished=self._job_finished, recent_inputs=self._recent_inputs, trusted=trusted,
        )  # fmt: skip

    # lifecycle ---------------------------------------------------------------------------------

    def recover(self) -> None:
        """After a restart, or when this process became the trainer: a job the previous runner
        ran is failed (its process ended if it outlived that runner) and its staging directory
        removed; the policy then retries it. Nothing to do for a process that runs no jobs."""
        if not self._runs_jobs:
            return
        for name, served in self._models.items():
            with self._trigger_lock:
                self._reap_orphans(name)
            served.registry.remove_stale_staging()
        # Specs of ended jobs (an older server kept them) hold texts, purged ones perhaps.
        discard_specs(self._work_dir, self._ended)
        for name in self._models:
            self._maybe_start(name)

    def _ended(self, job_id: str) -> bool:
        try:
            return self._jobs.job(job_id).state.finished
        except NotFound:
            return True

    def stop(self, timeout: float = 10.0) -> None:
        """Start no more jobs; end a running one (it is marked failed)."""
        with self._trigger_lock:
            self._stopping = True
            for timer in self._settle_timers.values():
                timer.cancel()
        for runner in self._runners.values():
            runner.stop(timeout)

    def poll(self) -> None:
        """Look for work: labels, drift marks and requested jobs that other processes stored,
        and for the requests of other processes that end the job running here (the trainer
        calls this every poll interval)."""
        for name in self._models:
            self._stop_ended_elsewhere(name)
            self._maybe_start(name)
            # A version approved or rejected through another process (a serving replica).
            self._metrics.pending_versions.labels(name).set(_pending_count(self._models[name]))

    def _stop_ended_elsewhere(self, model: str) -> None:
        """Stop the job running here if a call to another process (a serving replica) ended
        it: an operator's cancellation stored on its row (it fails with that error), or a purge
        that deleted samples of its data (its candidate would be refused at publish anyway)."""
        runner = self._runners[model]
        job_id = runner.active_id
        if job_id is None:
            return
        job = self._jobs.job(job_id)
        if job.cancel_requested:
            if runner.cancel(job_id, job.error):
                log.warning("stopped fine-tune job %s of %s: %s", job_id, model, job.error)
        elif self._jobs.purged(job_id) is not None and runner.cancel(job_id):
            log.warning("stopped fine-tune job %s of %s: its data was purged", job_id, model)

    def wait_idle(self, timeout: float | None = None) -> None:
        for runner in self._runners.values():
            runner.wait(timeout)

    # drift hook (raised by drift monitoring) ---------------------------------------------------

    def raise_drift_alarm(self, model: str) -> None:
        """Mark ``model`` as needing adaptation; a job starts once enough labels follow."""
        self._served(model)
        mark = AdaptationMark(model, self._replica, self._samples.last_seq(model), time.time())
        self._marks.raise_mark(mark)
        self._maybe_start(model)

    def clear_drift_alarm(self, model: str) -> None:
        self._marks.clear_mark(model, self._replica)

    def drift_alarm_changed(self, status: DriftStatus, raised: bool) -> None:
        """The drift monitor's model-level hook: publish the event, then mark or unmark the
        model. Only this alarm, never one detector's signal alone, can start a fine-tune."""
        model = status.model
        alarmed = [d for d in status.detectors if d.alarm and d.budgeted]
        names = ", ".join(d.detector for d in alarmed) or "none"
        kind = EventKind.DRIFT_ALARM_RAISED if raised else EventKind.DRIFT_ALARM_CLEARED
        verb = "raised" if raised else "cleared"
        self._events.publish(
            kind, model, f"drift alarm {verb} (detectors alarmed: {names})",
            detector=names, version=status.version,
            samples_seen=max((d.samples_seen for d in alarmed), default=0),
        )  # fmt: skip
        log.warning("drift alarm %s for %s (detectors alarmed: %s)", verb, model, names)
        if raised:
            self.raise_drift_alarm(model)
        else:
            self.clear_drift_alarm(model)

    def drift_signal_changed(self, status: DetectorStatus, raised: bool) -> None:
        """One detector's own alarm: an event for diagnosis; it starts nothing by itself."""
        kind = EventKind.DRIFT_SIGNAL_RAISED if raised else EventKind.DRIFT_SIGNAL_CLEARED
        verb = "raised" if raised else "cleared"
        self._events.publish(
            kind, status.model,
            f"drift signal {verb} by the {status.detector} detector ({status.method}): statistic "
            f"{status.statistic:.4g}, threshold {status.threshold:.4g}, effect {status.effect:.3g}",
            detector=status.detector, method=status.method, version=status.version,
            statistic=status.statistic, threshold=status.threshold, effect=status.effect,
            samples_seen=status.samples_seen,
        )  # fmt: skip

    # AdaptationCore ----------------------------------------------------------------------------

    async def list_models(self) -> list[str]:
        return sorted(self._models)

    async def add_samples(self, model: str, samples: list[NewSample], *, caller: str) -> AddOutcome:
        served = self._served(model)
        # Provenance: every stored sample records the token name it was posted with.
        samples = [dataclasses.replace(sample, source=caller) for sample in samples]
        try:
            if served.inputs.decode_in_thread:  # images are decoded: off the event loop
                await asyncio.to_thread(self._validate, served, samples)
            else:
                self._validate(served, samples)
            outcome = await asyncio.to_thread(self._samples.add, model, samples)
        except InvalidInput:
            self._metrics.samples.labels(model, "rejected").inc(len(samples))
            raise
        self._metrics.samples.labels(model, "accepted").inc(outcome.accepted)
        self._metrics.samples.labels(model, "duplicate").inc(outcome.duplicates)
        if outcome.accepted:
            self._last_label[model] = time.monotonic()
            self._online.score(model, samples)
            labeled = {s.prediction_id for s in samples if s.prediction_id}
            if labeled and self.on_labeled is not None:
                self.on_labeled(model, labeled)
            self._events.publish(
                EventKind.SAMPLES_ACCEPTED, model, f"{outcome.accepted} samples accepted",
                accepted=outcome.accepted, duplicates=outcome.duplicates,
            )  # fmt: skip
            await asyncio.to_thread(self._maybe_start, model)
        return outcome

    async def sample_sources(self, model: str) -> list[SourceSummary]:
        self._served(model)
        return await asyncio.to_thread(self._samples.sources, model)

    async def purge_samples(self, model: str, source: str, since: float | None) -> PurgeOutcome:
        """Delete a source's samples so that no later job trains or gates on them, and name
        what they went into, from the records jobs and versions keep of their data: every
        version (whatever its status) and the jobs that made no version. A running job among
        them is stopped here, and its candidate would be refused at publish anyway (also
        where another process runs it). Repeated, the purge names the same."""
        served = self._served(model)
        removed, first, last = await asyncio.to_thread(self._samples.purge, model, source, since)
        versions, jobs = await asyncio.to_thread(
            self._trained_on, served, source, since, (first, last) if removed else None
        )
        # The runner's lock may be held across a store call: cancelling waits for it off the loop.
        await asyncio.to_thread(self._stop_jobs, model, jobs)
        if removed:
            log.warning(
                "purged %d samples of %s posted by %s (seq %d..%d); versions that trained on "
                "them: %s; jobs: %s", removed, model, quote(source), first, last,
                versions or "none", [j.id for j in jobs] or "none",
            )  # fmt: skip
            self._events.publish(
                EventKind.SAMPLES_PURGED, model, f"{removed} samples of source {source} purged",
                source=source, removed=removed, versions=",".join(map(str, versions)),
                jobs=",".join(j.id for j in jobs),
            )  # fmt: skip
        return PurgeOutcome(model, source, removed, first, last, versions, jobs)

    def _stop_jobs(self, model: str, jobs: list[Job]) -> None:
        for job in jobs:
            if not job.state.finished and self._runners[model].cancel(job.id):
                log.warning("stopped fine-tune job %s of %s: its data was purged", job.id, model)

    def _trained_on(
        self,
        served: ServedModel,
        source: str,
        since: float | None,
        removed: tuple[int, int] | None,
    ) -> tuple[list[int], list[Job]]:
        """The versions and jobs whose data included the source's samples. A version from
        before data records has only its ``samples_upto``: it is named when this purge removed
        samples at or below it. Review examples of those samples leave the versions' meta."""
        versions = []
        for info in served.registry.versions():
            record = info.meta.trained_on
            if record is None:
                fine_tuned = info.meta.parent is not None
                if fine_tuned and removed is not None and info.meta.samples_upto >= removed[0]:
                    versions.append(info.version)
            elif record.includes(source, since):
                versions.append(info.version)
                _scrub_review(served, info)
        return versions, self._jobs.trained_on(served.name, source, since)

    async def versions_trained_on(self, model: str, source: str) -> list[int]:
        """The versions whose recorded data includes samples of ``source``: what a purge of
        it would name (before it removes anything)."""
        served = self._served(model)
        versions = await asyncio.to_thread(served.registry.versions)  # reads every meta.json
        return [
            info.version
            for info in versions
            if info.meta.trained_on is not None and info.meta.trained_on.includes(source)
        ]

    async def list_versions(self, model: str) -> list[VersionSummary]:
        served = self._served(model)
        serving = self._serving_version(served)
        versions = await asyncio.to_thread(served.registry.versions)  # reads every meta.json
        return [_summary(info, serving) for info in versions]

    async def model_status(self, model: str) -> ModelStatus:
        served = self._served(model)
        return await asyncio.to_thread(self._status, served)

    def _status(self, served: ServedModel) -> ModelStatus:
        model = served.name
        info = served.registry.get(self._serving_version(served))
        latest = self._jobs.latest(model)
        last_gate = next((j.gate for j in self._jobs.recent(model) if j.gate is not None), None)
        return ModelStatus(
            model=model,
            serving_version=info.version,
            samples_since_version=self._samples.count(model, info.meta.samples_upto),
            labels=info.labels,
            job=latest,
            last_gate=last_gate,
            needs_adaptation=bool(self._marks.marks(model)),
            backoff_until=self._policies[model].backoff_until(latest),
        )

    async def start_fine_tune(self, model: str, reason: str) -> Job:
        self._served(model)
        check_length("reason", reason, MAX_REASON_CHARS)
        return await asyncio.to_thread(
            self._start_requested, model, reason or "requested by an operator"
        )

    async def get_job(self, job_id: str) -> Job:
        check_length("job id", job_id)
        return await asyncio.to_thread(self._jobs.job, job_id)

    async def rollback(self, model: str, version: int) -> VersionSummary:
        served = self._served(model)
        return await asyncio.to_thread(self._rollback, served, version)

    def _rollback(self, served: ServedModel, version: int) -> VersionSummary:
        model = served.name
        info = served.registry.get(version)
        serving = self._serving_version(served)
        if info.meta.status == "rejected":
            raise InvalidInput(
                f"version {version} of {model!r} was rejected by the gate and never served"
            )
        if version == serving:
            raise InvalidInput(f"version {version} of {model!r} is already serving")
        # Against the version this server serves: if the head moved meanwhile (another replica's
        # rollback, a promotion), the rollback is refused rather than undoing that change.
        served.activate(version, serving)
        self._events.publish(
            EventKind.ROLLBACK,
            model,
            f"rolled back to version {version}",
            version=version,
            previous=serving,
        )
        self._events.publish(
            EventKind.SWAP,
            model,
            f"now serving version {version}",
            version=version,
            previous=serving,
        )
        return _summary(served.registry.get(version), version)

    async def approve_version(self, model: str, version: int, *, caller: str) -> VersionSummary:
        """Serve a version that waits for review, in place of the version it was trained from;
        :class:`Conflict` when that version no longer serves (a later round or a rollback came
        first: the candidate was judged against a model that is gone)."""
        served = self._served(model)
        return await asyncio.to_thread(self._approve, served, version, caller)

    def _approve(self, served: ServedModel, version: int, caller: str) -> VersionSummary:
        model = served.name
        info = self._pending(served, version)
        serving = self._serving_version(served)
        if info.meta.parent != serving:
            raise Conflict(
                f"version {version} of {model!r} was trained from version {info.meta.parent}, "
                f"but version {serving} serves now; reject it (the next round trains from the "
                "serving version)"
            )
        reason = f"approved by {caller}"
        runner = self._runners[model]
        try:
            runner.promote(info, serving, reason, serving)
        except DataPurged as exc:  # samples it trained on were purged: it never serves
            self._decided(served, info, "rejected", str(exc))
            raise
        self._decided(served, info, "promoted", reason)
        self._marks.clear_marks(model)
        return _summary(served.registry.get(version), version)

    async def reject_version(self, model: str, version: int, *, caller: str) -> VersionSummary:
        """Reject a version that waits for review: it never serves."""
        served = self._served(model)
        return await asyncio.to_thread(self._reject, served, version, caller)

    def _reject(self, served: ServedModel, version: int, caller: str) -> VersionSummary:
        info = self._pending(served, version)
        reason = f"rejected by {caller} on review"
        self._decided(served, info, "rejected", reason)
        self._events.publish(
            EventKind.CANDIDATE_REJECTED, served.name, f"version {version} {reason}",
            version=version, reason=reason,
        )  # fmt: skip
        return _summary(served.registry.get(version), self._serving_version(served))

    def _pending(self, served: ServedModel, version: int) -> VersionInfo:
        info = served.registry.get(version)
        if info.meta.status != "pending":
            raise InvalidInput(
                f"version {version} of {served.name!r} does not wait for review (status "
                f"{_summary(info, self._serving_version(served)).status!r})"
            )
        return info

    def _decided(self, served: ServedModel, info: VersionInfo, status: str, reason: str) -> None:
        """Record an operator's decision on the version and on the job that made it."""
        served.registry.update_meta(
            info.version, status=status, reason=f"{info.meta.reason}; {reason}"
        )
        self._metrics.pending_versions.labels(served.name).set(_pending_count(served))
        job = next(
            (j for j in self._jobs.recent(served.name) if j.candidate_version == info.version),
            None,
        )
        if job is not None and job.state is JobState.PENDING:
            state = JobState.PROMOTED if status == "promoted" else JobState.REJECTED
            self._jobs.update(job.id, state=state)
        log.warning("model %s version %d %s", served.name, info.version, reason)

    def _recent_inputs(self, model: str, count: int) -> list[str | bytes]:
        """Recent served inputs of the model, newest first: texts, or the bytes of binary
        inputs (none without drift monitoring)."""
        if self._drift is None:
            return []
        return self._drift.recent_inputs(model, count)

    async def drift_status(self, model: str) -> DriftStatus:
        served = self._served(model)
        if self._drift is None:
            return DriftStatus(model, self._serving_version(served), alarm=False, enabled=False)
        return self._drift.status(model)

    async def labeling_candidates(self, model: str, count: int) -> list[Candidate]:
        self._served(model)
        if not 0 <= count <= MAX_CANDIDATES:
            raise InvalidInput(f"count must be in [0, {MAX_CANDIDATES}] (0 means 20), got {count}")
        if self._drift is None:
            return []
        return self._drift.candidates(model, count or DEFAULT_CANDIDATES)

    async def delete_sample(self, model: str, sample_id: str, *, caller: str) -> Sample:
        """Delete one sample ``caller`` posted (an undone label), by its id; NotFound when
        the caller's source has no sample of that id. Recorded as a purge of that sample: a
        job that read it cannot publish. Its input, if served lately, is a labeling candidate
        again, so that it can be labeled anew."""
        self._served(model)
        check_length("sample id", sample_id)
        sample = await asyncio.to_thread(self._samples.delete_sample, model, caller, sample_id)
        if sample is None:
            raise NotFound(
                f"model {model!r} has no sample {quote(sample_id)} posted by {quote(caller)}"
            )
        log.info("deleted sample %s of %s posted by %s", quote(sample_id), model, quote(caller))
        if self._drift is not None and sample.prediction_id:
            self._drift.restore(model, {sample.prediction_id})
        return sample

    async def recent_jobs(self, model: str, limit: int = 20) -> list[Job]:
        """The model's latest jobs, newest first."""
        self._served(model)
        return await asyncio.to_thread(self._jobs.recent, model, limit)

    async def cancel_job(self, model: str, job_id: str, *, caller: str) -> Job:
        """End an unfinished job of ``model``, wherever it runs; AlreadyEnded when it has
        ended. The job fails with the error ``cancelled by <caller>``, stored before its process
        ends: it is never retried, also after a restart. Returns the job as stored now: a job
        that runs here is ended at once, a queued one fails at once, and one that another
        process (the trainer) runs is marked ``cancel_requested`` until that process ends it
        at its next poll."""
        self._served(model)
        job = await self.get_job(job_id)
        if job.model != model:
            raise NotFound(f"model {model!r} has no job {quote(job_id)}")
        reason = CANCELLED_BY + caller
        # The runner's lock may be held across a store call: cancelling waits for it off the loop.
        return await asyncio.to_thread(self._cancel, job, reason)

    def _cancel(self, job: Job, reason: str) -> Job:
        if self._runners[job.model].cancel(job.id, reason):
            log.warning("fine-tune job %s of %s %s", job.id, job.model, reason)
            return self._cancelled_here(job.id)
        requested = self._jobs.request_cancel(job.id, reason)
        if requested is None:
            ended = self._jobs.job(job.id)
            raise AlreadyEnded(
                f"job {job.id} of {job.model!r} has already ended ({ended.state.value}); "
                "there is nothing to cancel"
            )
        if requested.cancel_requested:
            log.warning(
                "fine-tune job %s of %s %s: the process that runs it ends it at its next poll",
                job.id, job.model, reason,
            )  # fmt: skip
        else:
            log.warning("queued fine-tune job %s of %s %s", job.id, job.model, reason)
        return requested

    def _cancelled_here(self, job_id: str) -> Job:
        """The job this process has just ended, once its runner has recorded the end (its
        process was terminated: that takes a moment), so that the caller is answered with the
        final state; as stored after CANCEL_WAIT_S otherwise."""
        deadline = time.monotonic() + CANCEL_WAIT_S
        job = self._jobs.job(job_id)
        while not job.state.finished and time.monotonic() < deadline:
            time.sleep(0.05)  # a worker thread (cancel_job runs _cancel off the loop)
            job = self._jobs.job(job_id)
        return job

    def job_log_tail(self, job_id: str, max_bytes: int = 4096) -> str:
        """The end of a job's process output while its directory exists ("" otherwise)."""
        check_length("job id", job_id)
        if not job_id or "/" in job_id or job_id.startswith("."):  # a name, never a path
            return ""
        path = self._work_dir / job_id / "job.log"
        try:
            with path.open("rb") as handle:
                handle.seek(max(0, path.stat().st_size - max_bytes))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def watch_events(self, model: str) -> AsyncGenerator[Event, None]:
        if model:
            self._served(model)
        return self._events.subscribe(model)

    # internals ---------------------------------------------------------------------------------

    def _served(self, model: str) -> ServedModel:
        check_length("model name", model)
        try:
            return self._models[model]
        except KeyError:
            served = ", ".join(repr(n) for n in self._models) or "none"
            raise NotFound(f"unknown model {quote(model)}; this server serves {served}") from None

    @staticmethod
    def _loaded(served: ServedModel) -> LoadedVersion:
        loaded = served.serving_version
        if loaded is None:
            raise Unavailable(f"model {served.name!r} is loading; retry shortly")
        return loaded

    @classmethod
    def _serving_version(cls, served: ServedModel) -> int:
        return cls._loaded(served).version

    def _validate(self, served: ServedModel, samples: list[NewSample]) -> None:
        validate_samples(
            samples,
            inputs=served.inputs,
            labels=set(self._loaded(served).labels),
            allow_new_labels=served.definition.adaptation.allow_new_labels,
        )

    def _start_requested(self, model: str, reason: str) -> Job:
        """An operator's job: the active one if there is one, else a new one."""
        with self._trigger_lock:
            active = self._active(model)
            if active is not None:
                return active
            served = self._models[model]
            base = served.registry.get(self._serving_version(served))
            if self._samples.count(model, base.meta.samples_upto) == 0:
                raise InvalidInput(
                    f"model {model!r} has no labeled samples newer than version {base.version}; post labels first"
                )
            # A replica, or a standby trainer: the trainer holding the lease adopts the row.
            if not self._runs_jobs or (not self._stopping and not self._may_run_jobs()):
                return self._queue(model, reason)
            return self._start(model, "manual", reason)

    def _may_start_here(self) -> bool:
        return self._runs_jobs and not self._stopping and self._may_run_jobs()

    def _queue(self, model: str, reason: str) -> Job:
        """A requested job for the trainer to adopt (this process runs no jobs now)."""
        served = self._models[model]
        job = self._jobs.create(
            model, "manual", reason, self._serving_version(served), self._samples.last_seq(model)
        )
        log.info("queued fine-tune %s of %s for the trainer (%s)", job.id, model, reason)
        return job

    def _active(self, model: str) -> Job | None:
        """The model's unfinished job (called under the trigger lock). Where this process runs
        jobs, a queued row is adopted and a running row no runner here owns is failed first,
        so that neither can block the loop."""
        if not self._may_start_here():
            return self._jobs.active(model)
        self._reap_orphans(model)
        adopted = self._adopt_queued(model)
        return adopted if adopted is not None else self._runners[model].active_job()

    def _reap_orphans(self, model: str) -> None:
        """Fail the model's running job rows that its runner does not own (under the trigger
        lock, so no job can start meanwhile): rows of a previous server or trainer, whose
        process is ended if it still runs here."""
        owned = self._runners[model].active_id
        while (row := self._jobs.active(model)) is not None and row.id != owned:
            if row.state is JobState.QUEUED:
                return
            end_recorded_process(self._work_dir / row.id)
            error = row.error if row.cancelled else INTERRUPTED  # a cancellation stays one
            self._jobs.update(row.id, state=JobState.FAILED, finished=time.time(), error=error)
            log.warning("fine-tune job %s of %s: %s; marked failed", row.id, model, error)

    def _adopt_queued(self, model: str) -> Job | None:
        """Run a job another process queued (a StartFineTune call to a serving replica)."""
        runner = self._runners[model]
        row = self._jobs.active(model)
        if row is None or row.state is not JobState.QUEUED or runner.active_id is not None:
            return None
        job = runner.try_start(lambda: row)
        if job is None:
            self._jobs.update(row.id, state=JobState.FAILED, finished=time.time(), error=ABANDONED)
            return None
        log.info("adopted queued fine-tune %s of %s (%s)", job.id, model, job.reason)
        return job

    def _maybe_start(self, model: str) -> Job | None:
        with self._trigger_lock:
            if not self._may_start_here():
                return None
            served = self._models[model]
            if self._active(model) is not None:
                return None
            base = served.registry.get(self._serving_version(served))
            base_upto = base.meta.samples_upto
            latest = self._jobs.latest(model)
            last_upto = max(base_upto, latest.samples_upto if latest else 0)
            alarm = min(self._marks.marks(model), key=lambda m: m.since_seq, default=None)
            decision = self._policies[model].decide(
                PolicyInput(
                    # Distinct texts: a flood of copies of one text is one label's worth.
                    samples_since_last_job=self._samples.distinct_count(model, last_upto),
                    samples_since_alarm=(
                        self._samples.distinct_count(model, alarm.since_seq) if alarm else 0
                    ),
                    drift_alarm=alarm is not None,
                    latest_job=self._as_retried(model, latest),
                    now=time.time(),
                )
            )
            if decision is None:
                self._due_since.pop(model, None)
                return None
            if self._settling(model, decision):
                return None
            attempt = latest.attempt + 1 if decision == "retry" and latest is not None else 1
            reason = {
                "samples": "enough new labeled samples",
                "drift": "drift alarm and labels since",
                "retry": f"retry after: {latest.error if latest else ''}",
            }[decision]
            return self._start(model, decision, reason, attempt)

    def _as_retried(self, model: str, latest: Job | None) -> Job | None:
        """A job an operator cancelled counts as out of retries: it failed, and backs off as
        failed jobs do, but is not started again."""
        if latest is None or not latest.cancelled:
            return latest
        retries = self._policies[model].recipe.max_retries
        return dataclasses.replace(latest, attempt=max(latest.attempt, retries + 1))

    def _settling(self, model: str, trigger: str) -> bool:
        """Hold a label-triggered job back while a burst of labels is still arriving (called
        under the trigger lock); a timer looks again when the burst should have ended."""
        now = time.monotonic()
        due = self._due_since.setdefault(model, now)
        quiet = now - self._last_label.get(model, float("-inf"))
        if model not in self._last_label and self._runs_jobs:
            # Labels posted to other processes (serving replicas): their stored time.
            newest = max((s.last_created for s in self._samples.sources(model)), default=None)
            quiet = float("inf") if newest is None else time.time() - newest
        delay = self._policies[model].settle_delay(trigger, quiet, now - due)
        previous = self._settle_timers.pop(model, None)
        if previous is not None:
            previous.cancel()
        if delay <= 0:
            return False
        timer = threading.Timer(delay, self._maybe_start, args=(model,))
        timer.daemon = True
        self._settle_timers[model] = timer
        timer.start()
        return True

    def _start(self, model: str, trigger: str, reason: str, attempt: int = 1) -> Job:
        """The one place jobs are created; called under the trigger lock, after ``_active``
        found none. The row is written only once the runner has accepted the job."""
        if self._stopping:
            raise Unavailable("server is shutting down; no new fine-tune jobs")
        served = self._models[model]
        base = self._serving_version(served)
        self._due_since.pop(model, None)
        timer = self._settle_timers.pop(model, None)
        if timer is not None:
            timer.cancel()
        job = self._runners[model].try_start(
            lambda: self._jobs.create(
                model, trigger, reason, base, self._samples.last_seq(model), attempt
            )
        )
        if job is None:  # the runner is stopping: stop() came between the checks above
            raise Unavailable("server is shutting down; no new fine-tune jobs")
        log.info("started fine-tune %s of %s (%s: %s)", job.id, model, trigger, reason)
        return job

    def _job_finished(self, job: Job) -> None:
        if job.state is JobState.PROMOTED:
            self._marks.clear_marks(job.model)
        # Called on the job's own thread, the runner already idle: decide on a follow-up from a
        # fresh thread, so that this one ends now.
        threading.Thread(target=self._maybe_start, args=(job.model,), daemon=True).start()


def _scrub_review(served: ServedModel, info: VersionInfo) -> None:
    """Drop what a version's review evidence quotes of its samples: the examples of
    contradicting samples and the token they share (in ``trigger`` and in the reasons). Counts
    and rates stay."""
    review = info.meta.review
    token = review.trigger if review is not None else ""
    if review is None or not (token or any(c.examples for c in review.contradictions)):
        return
    reasons = tuple(r.replace(repr(token), "a token") if token else r for r in review.reasons)
    scrubbed = dataclasses.replace(
        review,
        contradictions=tuple(dataclasses.replace(c, examples=()) for c in review.contradictions),
        trigger="",
        reasons=reasons,
    )
    served.registry.update_meta(info.version, review=scrubbed)


def _summary(info: VersionInfo, serving: int) -> VersionSummary:
    status = "serving" if info.version == serving else info.meta.status
    if status == "promoted":
        status = "retired"
    metrics = dict(info.meta.metrics)
    return VersionSummary(
        model=info.model,
        version=info.version,
        parent=info.meta.parent,
        created=info.meta.created,
        status=status,
        reason=info.meta.reason,
        samples_upto=info.meta.samples_upto,
        metrics=metrics,
        review=info.meta.review,
        serving_file=info.meta.serving_file,
        int8=info.meta.int8,
    )


def _pending_count(served: ServedModel) -> int:
    return sum(1 for info in served.registry.versions() if info.meta.status == "pending")
