"""Runs fine-tune jobs in child processes and acts on their results.

One job per model at a time. The job process (``python -m service.training.job``) is niced,
uses few threads and writes into a staging directory of the registry; this side publishes the
candidate as a new version either way (its meta.json records the gate scores and decision) and
hot-swaps it in only when the gate says promote. A job whose process dies is marked failed and
serving is untouched.

The job process dies with the server, kill -9 included (PR_SET_PDEATHSIG, set by the process
itself in ``service.training._finetune``). Its pid, start time and boot id are recorded in the
job's directory, so that a restart can still end one that outlived its server (an older
loopserve, or a kernel without prctl) without mistaking another process for it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from service.adaptation import _data
from service.adaptation._data import Pairs
from service.adaptation._inputs import (
    INPUTS_DIR,
    discard_inputs,
    write_input,
    write_stored_inputs,
)
from service.adaptation.events import EventBus
from service.config import AdaptationRecipe
from service.disk_full import DiskFullReporter
from service.domain.finetune import FineTuneRecipe, FineTuneResult, FineTuneSpec
from service.domain.loop import (
    JOB_PARENT_PID_ENV,
    EventKind,
    GateResult,
    Job,
    JobState,
    NewSample,
    Sample,
    content_key,
)
from service.domain.provenance import TrainingData, purged_message
from service.domain.versions import VersionMeta
from service.errors import DataPurged, StorageFull, disk_writes
from service.metrics import Metrics
from service.registry import Head, VersionInfo
from service.serving import ServedModel
from service.store import JobStore, SampleStore

log = logging.getLogger(__name__)
NOT_STARTED = "the job could not be started"
STOPPED = "the server stopped before the job process started"
PROCESS_FILE = "process.json"  # in the job's directory: pid, start time and boot id
SPEC_FILE = "spec.json"  # in the job's directory while the job runs: its data, texts included
RESULT_FILE = "result.json"  # written by the job process, read when it has ended
# Recent served inputs a job compares the candidate and the serving version on (see the review
# in service.domain.review): about 2 ms per input and model on a CPU core.
REVIEW_TRAFFIC = 1000
# (model, at most) -> recent served inputs: texts, or the bytes of binary inputs (images)
RecentInputs = Callable[[str, int], Sequence[str | bytes]]


def job_command(spec_path: Path) -> list[str]:
    """The command line of a fine-tune job's process."""
    return [sys.executable, "-m", "service.training.job", str(spec_path)]


class JobRunner:
    """Runs at most one job at a time for one model.

    A job row exists only once a runner accepted it: :meth:`try_start` creates the row under the
    runner's lock after checking that the runner is idle, and the final state is written under
    the same lock as the runner becomes idle again. So "the runner is busy" and "the model has an
    unfinished job row" never disagree, and a row never waits for a runner that will not come.
    """

    def __init__(
        self,
        served: ServedModel,
        samples: SampleStore,
        jobs: JobStore,
        events: EventBus,
        metrics: Metrics,
        work_dir: Path,
        on_finished: Callable[[Job], None] = lambda job: None,
        recent_inputs: RecentInputs = lambda model, count: [],
        trusted: Callable[[str], bool] = lambda source: False,
    ) -> None:
        self._served = served
        self._recent_inputs = recent_inputs
        self._trusted = trusted
        self._samples = samples
        self._jobs = jobs
        self._events = events
        self._metrics = metrics
        self._disk_full = DiskFullReporter(metrics)
        self._work_dir = work_dir
        self._on_finished = on_finished
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._job_id: str | None = None  # accepted and not yet finished
        self._cancelled = ""  # the running job's cancellation (its error), if an operator ended it
        self._stopping = False

    @property
    def model(self) -> str:
        return self._served.name

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._job_id is not None

    @property
    def active_id(self) -> str | None:
        """The id of the job this runner accepted and has not finished."""
        with self._lock:
            return self._job_id

    def active_job(self) -> Job | None:
        """That job as stored; read under the lock, so never a row already finished."""
        with self._lock:
            return None if self._job_id is None else self._jobs.job(self._job_id)

    def try_start(self, create: Callable[[], Job]) -> Job | None:
        """Create a job with ``create`` and run it, if the runner is idle; None if it is not."""
        with self._lock:
            if self._job_id is not None or self._stopping:
                return None
            job = create()
            thread = threading.Thread(
                target=self._run, args=(job,), name=f"job-{job.id}", daemon=True
            )
            self._job_id = job.id
            try:
                thread.start()
            except BaseException:
                self._job_id = None
                self._jobs.update(
                    job.id, state=JobState.FAILED, finished=time.time(), error=NOT_STARTED
                )
                raise
            self._thread = thread
            return job

    def stop(self, timeout: float = 10.0) -> None:
        """Start nothing more; kill a running job process (the job ends FAILED) and wait for the
        bookkeeping."""
        with self._lock:
            self._stopping = True
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, job: Job) -> None:
        started = time.time()
        state, error = JobState.FAILED, "the job thread ended unexpectedly"
        finished: Job | None = None
        try:
            job = self._jobs.update(job.id, state=JobState.RUNNING, started=started)
            self._metrics.job_running.labels(self.model).set(1)
            self._events.publish(
                EventKind.JOB_STARTED, self.model, f"fine-tune {job.id} started ({job.trigger}: {job.reason})",
                job=job.id, trigger=job.trigger, base_version=job.base_version,
            )  # fmt: skip
            with disk_writes(f"the files of fine-tune job {job.id}"):
                state, error = self._execute(job), ""
        except StorageFull as exc:  # the operator's to fix: counted and logged once, no traceback
            self._disk_full.failed("fine-tune job", exc)
            error = str(exc)
        except DataPurged as exc:  # an operator's purge, not a fault
            log.warning("fine-tune job %s: %s", job.id, exc)
            error = str(exc)
        except Exception as exc:
            log.exception("fine-tune job %s failed", job.id)
            error = str(exc) or type(exc).__name__
        else:
            self._disk_full.succeeded("fine-tune job")
        finally:
            # The spec holds every text the job read, its inputs dir their content: they go
            # when the job ends, however.
            discard_spec(self._work_dir / job.id)
            # Whatever happened, the runner becomes idle: a busy runner with no job would
            # block the model's loop until a restart.
            self._metrics.job_running.labels(self.model).set(0)
            finished = self._finish(job, state, error, started)
        if finished is not None:
            self._on_finished(finished)

    def _finish(self, job: Job, state: JobState, error: str, started: float) -> Job | None:
        """Write the final state and become idle, as one step under the lock; None when the
        store would not take it (closed at shutdown: the next start recovers the row)."""
        with self._lock:
            if state is JobState.FAILED:  # not if it had just succeeded
                error = self._cancelled or self._requested_cancel(job.id) or error
            try:
                done = self._jobs.update(job.id, state=state, finished=time.time(), error=error)
            except Exception:
                log.exception("could not record the end of fine-tune job %s", job.id)
                return None
            finally:
                self._job_id = None
                self._process = None
                self._cancelled = ""
            self._metrics.jobs.labels(self.model, done.state.value).inc()
            self._metrics.job_duration.labels(self.model).observe(time.time() - started)
            outcome = f"fine-tune {done.id} {done.state.value}" + (
                f": {done.error}" if done.error else ""
            )
            # Still under the lock: a follow-up job's job_started comes after this event.
            self._events.publish(
                EventKind.JOB_FINISHED, self.model, outcome,
                job=done.id, state=done.state.value, candidate_version=done.candidate_version or "",
            )  # fmt: skip
        return done

    def _requested_cancel(self, job_id: str) -> str:
        """The cancellation an operator requested through another process while the job ran,
        if it came before the trainer's poll acted on it: a failure stays a cancellation."""
        try:
            job = self._jobs.job(job_id)
        except Exception:  # the store is closed at shutdown: the failure's own error then
            return ""
        return job.error if job.cancel_requested else ""

    def _execute(self, job: Job) -> JobState:
        """Train, gate, publish and maybe promote; the job's final state (raises on failure)."""
        registry = self._served.registry
        base = registry.get(job.base_version)
        job_dir = self._work_dir / job.id
        job_dir.mkdir(parents=True, exist_ok=True)
        with registry.stage(parent=base.version) as staged:
            spec_path = self._write_spec(job, base, staged.path, job_dir)
            result = self._run_process(spec_path, job_dir)
            job = self._refuse_purged(job.id)
            gate = result.gate
            if result.disk_full:  # writing the candidate's files
                raise StorageFull(f"the files of a new version of model {self.model!r}")
            if not result.ok or gate is None:
                raise RuntimeError(result.error or "the job process ended without a result")
            self._record_gate(gate)
            info = registry.publish(staged, self._meta(job, base, result, gate))
        job = self._jobs.update(job.id, candidate_version=info.version, gate=gate)
        if not gate.promote:
            self._events.publish(
                EventKind.CANDIDATE_REJECTED, self.model, f"version {info.version} rejected: {gate.reason}",
                version=info.version, reason=gate.reason,
            )  # fmt: skip
            return JobState.REJECTED
        if info.meta.status == "pending":
            self._hold(info)
            return JobState.PENDING
        self.promote(info, base.version, gate.reason)
        return JobState.PROMOTED

    def promote(
        self,
        info: VersionInfo,
        base: int,
        reason: str,
        expected: int | Literal[Head.AS_READ] = Head.AS_READ,
    ) -> None:
        """Serve a published candidate in place of ``base``, the version it was trained from
        (the head moves by compare-and-set against ``expected``: :class:`~service.errors.Conflict`
        when it moved meanwhile). The one way a candidate starts serving: after its job, or
        when an operator approves it."""
        try:
            # With the job: refused (DataPurged) if samples it trained or gated on were purged,
            # checked under the same lock or transaction as the head move.
            self._served.activate(info.version, expected, job=info.meta.job)
        except DataPurged as exc:
            self._served.registry.update_meta(info.version, status="rejected", reason=str(exc))
            raise
        self._events.publish(
            EventKind.CANDIDATE_PROMOTED, self.model, f"version {info.version} promoted: {reason}",
            version=info.version, reason=reason,
        )  # fmt: skip
        self._events.publish(
            EventKind.SWAP, self.model, f"now serving version {info.version}",
            version=info.version, previous=base,
        )  # fmt: skip

    def _hold(self, info: VersionInfo) -> None:
        """A candidate that passed the accuracy gate but whose round looks like poisoning: it
        waits, published as pending, until an operator approves or rejects it."""
        review = info.meta.review
        reasons = "; ".join(review.reasons) if review is not None else ""
        self._metrics.pending_verdicts.labels(self.model).inc()
        self._metrics.pending_versions.labels(self.model).inc()
        log.warning("model %s version %d waits for review: %s", self.model, info.version, reasons)
        self._events.publish(
            EventKind.CANDIDATE_PENDING, self.model,
            f"version {info.version} waits for review: {reasons}",
            version=info.version, reason=reasons,
        )  # fmt: skip

    def _write_spec(self, job: Job, base: VersionInfo, staging: Path, job_dir: Path) -> Path:
        definition = self._served.definition
        base_upto = base.meta.samples_upto
        known = base.labels
        recipe = definition.adaptation
        # Purges up to this one deleted before the read: none of their samples can be in it.
        seen = max((p.n for p in self._samples.purges(self.model)), default=0)
        read = self._samples.samples(self.model, 0, job.samples_upto)
        new_samples = [s for s in read if s.seq > base_upto]
        if not recipe.allow_new_labels:
            new_samples = [s for s in new_samples if s.label in known]
        seed = recipe.seed + job.attempt
        share, flood = recipe.max_source_share, recipe.flood_copies
        new_samples = _data.curate(new_samples, share, seed, flood)
        old_samples = _data.curate([s for s in read if s.seq <= base_upto], share, seed, flood)
        round_samples = [(s.text, s.label, s.source) for s in new_samples]
        new, reserved_new = _split_reserved(new_samples, recipe.holdout_fraction)
        old, reserved_old = _split_reserved(old_samples, recipe.holdout_fraction)
        seed_data = self._served.task.seed_samples(definition)  # one at a time: bytes not kept
        old += [(_named(s), s.label) for s in seed_data if s.label in known]
        traffic, traffic_content = _traffic(self._recent_inputs(self.model, REVIEW_TRAFFIC))
        data = _data.select(
            new, old, known, recipe, recipe.seed + job.attempt, reserved_new, reserved_old
        )
        inputs_dir = job_dir / INPUTS_DIR
        spec = FineTuneSpec(
            model=self.model,
            backbone=self._served.task.job_backbone(definition, base.meta),
            pooling=base.meta.pooling,
            max_seq_length=base.meta.max_seq_length,
            base_version=base.version,
            base_dir=str(base.path),
            base_serving_file=base.serving_file.name,
            base_labels=known,
            labels=known + data.new_labels,
            trainable_layers=base.meta.trainable_layers,
            train=data.train,
            validation=data.validation,
            holdout=data.holdout,
            anchor=data.anchor,
            anchor_held_out=data.anchor_held_out,
            recipe=_job_recipe(definition.adaptation),
            gate=definition.gate,
            int8=definition.serving.int8,
            int8_max_accuracy_drop=definition.serving.int8_max_accuracy_drop,
            threads=definition.adaptation.job_threads,
            nice=definition.adaptation.job_nice,
            idle_priority=definition.adaptation.job_idle_priority,
            staging_dir=str(staging),
            result_path=str(job_dir / RESULT_FILE),
            round_samples=round_samples,
            traffic=traffic,
            trusted=bool(new_samples) and all(self._trusted(s.source) for s in new_samples),
            task=definition.task,
            inputs_dir=str(inputs_dir) if self._served.inputs.content_samples else "",
            augment=list(definition.train.augment),
            augment_views=definition.train.augment_views,
        )
        # Recorded before the process starts: a purge from now on names the job, and a publish
        # checks this record against the purges.
        self._jobs.update(job.id, data=_used(read, new_samples + old_samples, data, seen))
        if spec.inputs_dir:
            self._write_inputs(job.id, inputs_dir, spec, traffic_content)
        path = job_dir / SPEC_FILE
        spec.save(path)
        return path

    def _write_inputs(
        self, job_id: str, directory: Path, spec: FineTuneSpec, traffic: dict[str, bytes]
    ) -> None:
        """The content every key of the spec names (agreed layout: ``<dir>/<hex>``): the
        traffic's from ``traffic``, the seed's read again from the model's seed data, the
        samples' from the store."""
        pairs = [*spec.train, *spec.validation, *spec.holdout, *spec.anchor]
        keys = {text for text, _ in pairs} | {text for text, _, _ in spec.round_samples}
        keys |= set(spec.traffic)
        written = keys & traffic.keys()
        for key in written:
            write_input(directory, key, traffic[key])
        for sample in self._served.task.seed_samples(self._served.definition):
            key = _named(sample)
            if key in keys and key not in written:
                write_input(directory, key, sample.data)
                written.add(key)
        read = functools.partial(self._samples.blobs, self.model)
        missing = write_stored_inputs(directory, keys - written, read)
        if missing:  # their samples were purged after the job read them
            self._refuse_purged(job_id)
            raise RuntimeError(f"the content of {len(missing)} samples is gone from the store")

    def _refuse_purged(self, job_id: str) -> Job:
        """The job as stored; DataPurged when a purge deleted samples of its data (the
        publish re-checks under the head move's lock: a purge may still come after this)."""
        purge = self._jobs.purged(job_id)
        if purge is not None:
            raise DataPurged(purged_message(job_id, purge))
        return self._jobs.job(job_id)

    def cancel(self, job_id: str, reason: str = "") -> bool:
        """End ``job_id`` if this runner runs it; True when it was ended here. ``reason`` (an
        operator's cancellation, see CANCELLED_BY) is stored as the job's error before its
        process ends and stays its error; with one, a job whose process has not started yet is
        ended too (the process never starts). Without one the job fails with what ended the
        process (a purge of its data)."""
        with self._lock:  # _finish takes it too: the job cannot end between check and mark
            if self._job_id != job_id:
                return False
            process = self._process
            if process is None:
                if not reason:  # a purge: the job is refused once its process has ended
                    return False
            elif process.poll() is not None:  # it has just ended
                return False
            if reason:
                self._jobs.update(job_id, error=reason)
                self._cancelled = reason
            if process is not None:
                process.terminate()
        return True

    def _run_process(self, spec_path: Path, job_dir: Path) -> FineTuneResult:
        with (job_dir / "job.log").open("wb") as output:
            with self._lock:
                if self._stopping:  # stop() came before there was a process to end
                    raise RuntimeError(STOPPED)
                if self._cancelled:  # an operator ended the job before it had a process
                    raise RuntimeError(self._cancelled)
                # The job dies with the server (kill -9 included): it sets PR_SET_PDEATHSIG
                # for this thread, which lives until the process has ended, and checks that
                # this pid is still its parent. Its pid is recorded so that a restart can end
                # a job process that nevertheless outlived its server.
                self._process = process = subprocess.Popen(
                    job_command(spec_path),
                    stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True,  # a Ctrl-C meant for the server does not hit the job
                    env={**os.environ, JOB_PARENT_PID_ENV: str(os.getpid())},
                )  # fmt: skip
            record_process(job_dir, process.pid)
            code = process.wait()
        result = FineTuneResult.load(job_dir / RESULT_FILE)
        if result is not None and (code == 0 if result.ok else bool(result.error)):
            return result
        # No result, a success the exit code contradicts, or a failure without its reason.
        return FineTuneResult.failed(
            f"job process exited with code {code}; see {job_dir / 'job.log'}"
        )

    def _record_gate(self, gate: GateResult) -> None:
        for role, dataset, value in (
            ("candidate", "new", gate.candidate_new),
            ("incumbent", "new", gate.incumbent_new),
            ("candidate", "anchor", gate.candidate_anchor),
            ("incumbent", "anchor", gate.incumbent_anchor),
        ):
            self._metrics.gate_accuracy.labels(self.model, role, dataset).set(value)

    @staticmethod
    def _meta(job: Job, base: VersionInfo, result: FineTuneResult, gate: GateResult) -> VersionMeta:
        review = result.review
        held = gate.promote and review is not None and review.suspicious
        return VersionMeta(
            labels=tuple(result.labels),
            max_seq_length=base.meta.max_seq_length,
            # A candidate decodes its inputs as its base version does.
            task=base.meta.task,
            inputs=base.meta.inputs,
            pooling=base.meta.pooling,
            backbone=base.meta.backbone,
            trainable_layers=base.meta.trainable_layers,
            serving_file=result.serving_file,
            status="pending" if held else "promoted" if gate.promote else "rejected",
            reason=f"{job.trigger}: {job.reason}",
            job=job.id,
            samples_upto=job.samples_upto,
            trained_on=job.data,
            data=result.data,
            train=result.train,
            gate=gate,
            review=review,
            int8=result.int8,
            calibration=result.calibration,
            metrics={
                "gate_candidate_new": gate.candidate_new,
                "gate_incumbent_new": gate.incumbent_new,
                "gate_candidate_anchor": gate.candidate_anchor,
                "gate_incumbent_anchor": gate.incumbent_anchor,
                "forgetting": gate.forgetting,
                "parity_max_abs_diff": result.parity_max_abs_diff,
                "job_seconds": result.seconds,
            },
        )


def _job_recipe(recipe: AdaptationRecipe) -> FineTuneRecipe:
    """The part of the adaptation recipe the job process trains with."""
    return FineTuneRecipe(
        seed=recipe.seed,
        learning_rate=recipe.learning_rate,
        layer_lr_decay=recipe.layer_lr_decay,
        head_learning_rate=recipe.head_learning_rate,
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        patience=recipe.patience,
        balance_classes=recipe.balance_classes,
    )


def _used(
    read: list[Sample], curated: list[Sample], data: _data.JobData, purges_seen: int
) -> TrainingData:
    """The record of the samples among ``read`` that went into the job: the curated ones whose
    text and label reached training, validation, the holdout or the anchor."""
    pairs = {*data.train, *data.validation, *data.holdout, *data.anchor}
    used = {s.seq for s in curated if (s.text, s.label) in pairs}
    return TrainingData.of(read, used, purges_seen)


def discard_spec(job_dir: Path) -> None:
    """Remove the job's spec, which holds the texts the job read (purged ones included), its
    inputs dir (the content of the samples it read), and its result, which quotes some in its
    review evidence (the version's meta.json keeps it)."""
    for name in (SPEC_FILE, RESULT_FILE):
        try:
            (job_dir / name).unlink(missing_ok=True)
        except OSError:
            log.warning("could not remove %s", job_dir / name, exc_info=True)
    discard_inputs(job_dir)


def discard_specs(work_dir: Path, ended: Callable[[str], bool]) -> None:
    """Remove the specs and inputs of the job directories whose job ``ended``: left by a
    server that stopped while its job ran, or by an older loopserve that kept them."""
    if work_dir.is_dir():
        for job_dir in work_dir.iterdir():
            left = (job_dir / SPEC_FILE).exists() or (job_dir / INPUTS_DIR).exists()
            if left and ended(job_dir.name):
                discard_spec(job_dir)


def _named(sample: NewSample) -> str:
    """How a job names a sample's input: its text, or its content by key."""
    return content_key(sample.data) if sample.data else sample.text


def _traffic(inputs: Sequence[str | bytes]) -> tuple[list[str], dict[str, bytes]]:
    """Recent served inputs as the review names them: texts as they are, binary inputs by
    content key (with their content); ones not kept ("") left out."""
    named: list[str] = []
    content: dict[str, bytes] = {}
    for item in inputs:
        if not item:
            continue
        if isinstance(item, bytes):
            key = content_key(item)
            content[key] = item
            named.append(key)
        else:
            named.append(item)
    return named, content


def _split_reserved(samples: list[Sample], fraction: float) -> tuple[Pairs, Pairs]:
    """(trainable, reserved) text-label pairs; see :func:`_data.reserved`."""
    trainable: Pairs = []
    reserve: Pairs = []
    for sample in samples:
        (reserve if _data.reserved(sample.text, sample.label, fraction) else trainable).append(
            (sample.text, sample.label)
        )
    return trainable, reserve


# --- the job process's identity, for a restart ----------------------------------------------------


def record_process(job_dir: Path, pid: int) -> None:
    """Record which process runs the job, precisely enough that a later server can tell it
    from an unrelated process that reused the pid."""
    record = {"pid": pid, "start": _start_ticks(pid), "boot": _boot_id()}
    tmp = job_dir / f".{PROCESS_FILE}.tmp"
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, job_dir / PROCESS_FILE)


def end_recorded_process(job_dir: Path, timeout: float = 10.0) -> bool:
    """Kill the job process recorded in ``job_dir`` and its process group, if that very process
    still runs (a server killed before job processes died with it left it behind). True when
    one was ended."""
    try:
        record = json.loads((job_dir / PROCESS_FILE).read_text(encoding="utf-8"))
        pid, start, boot = int(record["pid"]), record["start"], record["boot"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if start is None or boot != _boot_id() or _start_ticks(pid) != start:
        return False  # gone, or the pid now names another process
    try:
        os.killpg(pid, signal.SIGKILL)  # started in its own session: its group id is its pid
    except (ProcessLookupError, PermissionError):
        return False
    deadline = time.monotonic() + timeout
    while _start_ticks(pid) == start and time.monotonic() < deadline:
        time.sleep(0.05)
    log.warning("ended fine-tune process %d in %s, left running by a previous server", pid, job_dir)
    return True


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22);
    None when there is no such live process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the command name may contain spaces
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _boot_id() -> str:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    return ""
