"""Runs fine-tune jobs in child processes and acts on their results.

One job per model at a time. The job process (``python -m service.training.job``) is niced,
uses few threads and writes into a staging directory of the registry; this side publishes the
candidate as a new version either way (its meta.json records the gate scores and decision) and
hot-swaps it in only when the gate says promote. A job whose process dies is marked failed and
serving is untouched.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.adaptation import _data
from service.adaptation._data import Pairs
from service.adaptation.events import EventBus
from service.adaptation.spec import FineTuneSpec
from service.adaptation.types import EventKind, GateResult, Job, JobState, Sample
from service.calibration import Calibration
from service.config import read_labeled_csv
from service.metrics import Metrics
from service.registry import VersionInfo
from service.serving import ServedModel
from service.store import JobStore, SampleStore

log = logging.getLogger(__name__)


class JobRunner:
    def __init__(
        self,
        served: ServedModel,
        samples: SampleStore,
        jobs: JobStore,
        events: EventBus,
        metrics: Metrics,
        work_dir: Path,
        on_finished: Callable[[Job], None] = lambda job: None,
    ) -> None:
        self._served = served
        self._samples = samples
        self._jobs = jobs
        self._events = events
        self._metrics = metrics
        self._work_dir = work_dir
        self._on_finished = on_finished
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return self._served.name

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, job: Job) -> None:
        with self._lock:
            if self.busy:
                raise RuntimeError(f"a job of model {self.model} is already running")
            self._thread = threading.Thread(
                target=self._run, args=(job,), name=f"job-{job.id}", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Kill a running job process (the job ends FAILED) and wait for the bookkeeping."""
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
        job = self._jobs.update(job.id, state=JobState.RUNNING, started=started)
        self._metrics.job_running.labels(self.model).set(1)
        self._events.publish(
            EventKind.JOB_STARTED, self.model, f"fine-tune {job.id} started ({job.trigger}: {job.reason})",
            job=job.id, trigger=job.trigger, base_version=job.base_version,
        )  # fmt: skip
        try:
            job = self._execute(job)
        except Exception as exc:
            log.exception("fine-tune job %s failed", job.id)
            job = self._jobs.update(
                job.id,
                state=JobState.FAILED,
                finished=time.time(),
                error=str(exc) or type(exc).__name__,
            )
        finally:
            self._metrics.job_running.labels(self.model).set(0)
        self._metrics.jobs.labels(self.model, job.state.value).inc()
        self._metrics.job_duration.labels(self.model).observe(time.time() - started)
        outcome = f"fine-tune {job.id} {job.state.value}" + (f": {job.error}" if job.error else "")
        self._events.publish(
            EventKind.JOB_FINISHED, self.model, outcome,
            job=job.id, state=job.state.value, candidate_version=job.candidate_version or "",
        )  # fmt: skip
        self._on_finished(job)

    def _execute(self, job: Job) -> Job:
        registry = self._served.registry
        base = registry.get(job.base_version)
        job_dir = self._work_dir / job.id
        job_dir.mkdir(parents=True, exist_ok=True)
        with registry.stage(parent=base.version) as staged:
            spec_path = self._write_spec(job, base, staged.path, job_dir)
            result = self._run_process(spec_path, job_dir)
            if not result.get("ok"):
                raise RuntimeError(result.get("error", "the job process ended without a result"))
            gate = GateResult(**result["gate"])
            self._record_gate(gate)
            info = registry.publish(staged, self._meta(job, base, result, gate))
        job = self._jobs.update(job.id, candidate_version=info.version, gate=gate)
        if not gate.promote:
            self._events.publish(
                EventKind.CANDIDATE_REJECTED, self.model, f"version {info.version} rejected: {gate.reason}",
                version=info.version, reason=gate.reason,
            )  # fmt: skip
            return self._jobs.update(job.id, state=JobState.REJECTED, finished=time.time())
        self._served.activate(info.version)
        self._events.publish(
            EventKind.CANDIDATE_PROMOTED, self.model, f"version {info.version} promoted: {gate.reason}",
            version=info.version, reason=gate.reason,
        )  # fmt: skip
        self._events.publish(
            EventKind.SWAP, self.model, f"now serving version {info.version}",
            version=info.version, previous=base.version,
        )  # fmt: skip
        return self._jobs.update(job.id, state=JobState.PROMOTED, finished=time.time())

    def _write_spec(self, job: Job, base: VersionInfo, staging: Path, job_dir: Path) -> Path:
        definition = self._served.definition
        base_upto = int(base.meta.get("samples_upto", 0))
        known = base.labels
        recipe = definition.adaptation
        new_samples = self._samples.samples(self.model, base_upto, job.samples_upto)
        if not recipe.allow_new_labels:
            new_samples = [s for s in new_samples if s.label in known]
        old_samples = self._samples.samples(self.model, 0, base_upto)
        new, reserved_new = _split_reserved(new_samples, recipe.holdout_fraction)
        old, reserved_old = _split_reserved(old_samples, recipe.holdout_fraction)
        old += [(t, label) for t, label in read_labeled_csv(definition.seed_path) if label in known]
        data = _data.select(
            new, old, known, recipe, recipe.seed + job.attempt, reserved_new, reserved_old
        )
        spec = FineTuneSpec(
            model=self.model,
            backbone=str(definition.backbone_path()),
            pooling=str(base.meta.get("pooling", definition.pooling)),
            max_seq_length=int(base.meta["max_seq_length"]),
            base_version=base.version,
            base_dir=str(base.path),
            base_serving_file=base.serving_file.name,
            base_labels=known,
            labels=known + data.new_labels,
            trainable_layers=int(
                base.meta.get("trainable_layers", definition.train.finetune_layers)
            ),
            train=data.train,
            validation=data.validation,
            holdout=data.holdout,
            anchor=data.anchor,
            anchor_held_out=data.anchor_held_out,
            recipe=dataclasses.asdict(definition.adaptation),
            gate=dataclasses.asdict(definition.gate),
            int8=definition.serving.int8,
            int8_max_accuracy_drop=definition.serving.int8_max_accuracy_drop,
            threads=definition.adaptation.job_threads,
            nice=definition.adaptation.job_nice,
            idle_priority=definition.adaptation.job_idle_priority,
            staging_dir=str(staging),
            result_path=str(job_dir / "result.json"),
        )
        path = job_dir / "spec.json"
        spec.save(path)
        return path

    def _run_process(self, spec_path: Path, job_dir: Path) -> dict[str, Any]:
        with (job_dir / "job.log").open("wb") as output:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "service.training.job", str(spec_path)],
                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C meant for the server does not hit the job
            )  # fmt: skip
            code = self._process.wait()
        result_path = job_dir / "result.json"
        result: dict[str, Any] = (
            json.loads(result_path.read_text()) if result_path.is_file() else {}
        )
        if code != 0 and result.get("ok"):
            result = {"ok": False}
        if not result.get("ok") and "error" not in result:
            result["error"] = f"job process exited with code {code}; see {job_dir / 'job.log'}"
        return result

    def _record_gate(self, gate: GateResult) -> None:
        for role, dataset, value in (
            ("candidate", "new", gate.candidate_new),
            ("incumbent", "new", gate.incumbent_new),
            ("candidate", "anchor", gate.candidate_anchor),
            ("incumbent", "anchor", gate.incumbent_anchor),
        ):
            self._metrics.gate_accuracy.labels(self.model, role, dataset).set(value)

    @staticmethod
    def _meta(
        job: Job, base: VersionInfo, result: dict[str, Any], gate: GateResult
    ) -> dict[str, Any]:
        # Parsed, not copied: meta records only a well-formed calibration.
        calibration = Calibration.from_dict(result.get("calibration"))
        return {
            "labels": result["labels"],
            "max_seq_length": base.meta["max_seq_length"],
            "pooling": base.meta.get("pooling", "mean"),
            "backbone": base.meta.get("backbone", ""),
            "trainable_layers": base.meta.get("trainable_layers", 0),
            "serving_file": result["serving_file"],
            "status": "promoted" if gate.promote else "rejected",
            "reason": f"{job.trigger}: {job.reason}",
            "job": job.id,
            "samples_upto": job.samples_upto,
            "data": result["data"],
            "train": result["train"],
            "gate": dataclasses.asdict(gate),
            "int8": result.get("int8"),
            "calibration": calibration.as_dict() if calibration else None,
            "metrics": {
                "gate_candidate_new": gate.candidate_new,
                "gate_incumbent_new": gate.incumbent_new,
                "gate_candidate_anchor": gate.candidate_anchor,
                "gate_incumbent_anchor": gate.incumbent_anchor,
                "forgetting": gate.forgetting,
                "parity_max_abs_diff": result["parity_max_abs_diff"],
                "job_seconds": result["seconds"],
            },
        }


def _split_reserved(samples: list[Sample], fraction: float) -> tuple[Pairs, Pairs]:
    """(trainable, reserved) text-label pairs; see :func:`_data.reserved`."""
    trainable: Pairs = []
    reserve: Pairs = []
    for sample in samples:
        (reserve if _data.reserved(sample.text, sample.label, fraction) else trainable).append(
            (sample.text, sample.label)
        )
    return trainable, reserve
