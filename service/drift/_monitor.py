"""The serving side of drift monitoring: a bounded queue per model, the worker, statuses, metrics.

``observe`` is called on the serving path and only offers the batch to a bounded queue: when
the queue is full the observation is dropped and counted, never waited for. A forwarder thread
per model drains its queue, keeps recent inputs for :meth:`DriftMonitor.candidates`, notices
version changes (a promotion, a rollback) and ships observations to the worker, which runs the
detectors in a separate, niced process so that scoring and threshold configuration never take
CPU time or the GIL from serving.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.calibration import Calibration, calibrated
from service.config import DriftRecipe, ModelDefinition
from service.domain.versions import DEFAULT_TASK
from service.drift._candidates import CandidatePool
from service.drift._detectors import as_observations
from service.drift._messages import (
    Activate,
    Observe,
    ProjectionReady,
    ReferenceInputs,
    Statuses,
    Stop,
    WorkerOptions,
)
from service.drift._process import main
from service.drift._served import MonitoredModel
from service.drift._types import Candidate, DetectorState, DetectorStatus, DriftStatus, Observations
from service.errors import ConfigError, NotFound
from service.metrics import Metrics
from service.registry import VersionInfo
from service.runtime import BatchResult

log = logging.getLogger(__name__)
# The model-level alarm was raised (True) or cleared (False): the model's drift status then.
AlarmHook = Callable[[DriftStatus, bool], None]
# One detector's own alarm (a diagnostic signal) was raised or cleared.
SignalHook = Callable[[DetectorStatus, bool], None]
# The training texts a version's drift reference is built from (at most ``size``).
ReferenceTextSource = Callable[[str, VersionInfo, int], list[str]]
MAX_BATCH_ROWS = 1024
FORWARD_INTERVAL = 0.1
RESTART_DELAYS = (1.0, 5.0, 30.0)
# Binary payloads (images) given out by one candidates answer: leaves room under the 4 MiB a
# message may carry for the rest of the answer.
CANDIDATE_CONTENT_BYTES = 3 * 1024 * 1024


class DriftMonitor:
    def __init__(
        self,
        models: Mapping[str, MonitoredModel],
        drift_dir: Path,
        metrics: Metrics,
        reference_texts: ReferenceTextSource,
        on_alarm: AlarmHook | None = None,
        on_signal: SignalHook | None = None,
        in_process: bool = False,
        log_level: str = "INFO",
    ) -> None:
        self._models = {n: m for n, m in models.items() if m.definition.drift.enabled}
        for served in self._models.values():
            _check_reference(served.definition)
        self._all_models = dict(models)
        self._recipes: dict[str, DriftRecipe] = {
            n: m.definition.drift for n, m in self._models.items()
        }
        self._metrics = metrics
        self._reference_texts = reference_texts
        self.on_alarm = on_alarm
        self.on_signal = on_signal
        self._in_process = in_process
        self._options = WorkerOptions(
            drift_dir=drift_dir,
            recipes=self._recipes,
            threads=max((r.worker_threads for r in self._recipes.values()), default=1),
            nice=max((r.worker_nice for r in self._recipes.values()), default=10),
            log_level=log_level,
        )
        self._queues: dict[str, queue.Queue[tuple[str, Sequence[Any], BatchResult]]] = {
            n: queue.Queue(r.queue_size) for n, r in self._recipes.items()
        }
        self.pools = {
            n: CandidatePool(r.candidate_pool_size, r.candidate_pool_bytes)
            for n, r in self._recipes.items()
        }
        # Bytes of binary payloads (images) waiting in each queue, bounded like the pool.
        self._queued_bytes = dict.fromkeys(self._recipes, 0)
        self._statuses: dict[str, dict[str, DetectorStatus]] = {n: {} for n in self._recipes}
        self._alarms = dict.fromkeys(self._recipes, False)
        self._rates = dict.fromkeys(self._recipes, math.nan)
        self.accuracy = {n: AccuracyEstimate(r.accuracy_window) for n, r in self._recipes.items()}
        self._dropped = dict.fromkeys(self._recipes, 0)
        self._activated: dict[str, int] = {}
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._stopping = threading.Event()
        self._inbox: Connection | None = None
        self._worker: Any = None
        self._threads: list[threading.Thread] = []
        self._restarts = 0

    @property
    def enabled(self) -> bool:
        return bool(self._models)

    # serving path ------------------------------------------------------------------------------

    def observe(
        self, model: str, request_id: str, payloads: Sequence[str | bytes], result: BatchResult
    ) -> None:
        """Offer one answered request to the monitor. Never blocks; drops when the queue is full.
        Binary payloads past the queue's byte budget are left out (the observations still go)."""
        q = self._queues.get(model)
        if q is None:
            return
        size = _binary_bytes(payloads)
        with self._state_lock:
            if (
                size
                and self._queued_bytes[model] + size > self._recipes[model].candidate_pool_bytes
            ):
                payloads, size = [""] * len(payloads), 0
            self._queued_bytes[model] += size
        try:
            q.put_nowait((request_id, payloads, result))
        except queue.Full:
            with self._state_lock:
                self._dropped[model] += len(payloads)
                self._queued_bytes[model] -= size
            self._metrics.drift_dropped.labels(model).inc(len(payloads))

    # lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        if not self.enabled:
            return
        for name in self._models:
            for state in DetectorState:
                for detector in self._recipes[name].detectors:
                    self._metrics.drift_state.labels(name, detector, state.value).set(
                        state is DetectorState.CALIBRATING
                    )
        self._start_worker()
        for name in self._models:
            thread = threading.Thread(
                target=self._forward, args=(name,), name=f"drift-forward-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        if not self.enabled or self._stopping.is_set():
            return
        self._stopping.set()
        self._send(Stop())
        for thread in self._threads:
            thread.join(timeout)
        worker = self._worker
        if worker is not None and not self._in_process:
            worker.join(timeout)
            if worker.is_alive():
                worker.terminate()
                worker.join(timeout)

    def _start_worker(self) -> None:
        inbox_worker, inbox = multiprocessing.Pipe(duplex=False)
        outbox, outbox_worker = multiprocessing.Pipe(duplex=False)
        worker: threading.Thread | multiprocessing.process.BaseProcess
        if self._in_process:
            from service.drift._worker import Worker

            worker = threading.Thread(
                target=Worker(self._options, outbox_worker).run,
                args=(inbox_worker,),
                name="drift-worker",
                daemon=True,
            )
        else:
            worker = multiprocessing.get_context("spawn").Process(
                target=main,
                args=(self._options, inbox_worker, outbox_worker),
                name="loopserve-drift",
                daemon=True,
            )
        worker.start()
        if not self._in_process:
            inbox_worker.close()
            outbox_worker.close()
        with self._send_lock:
            self._inbox = inbox
            self._worker = worker
        with self._state_lock:
            self._activated.clear()
        reader = threading.Thread(
            target=self._read, args=(outbox, worker), name="drift-reader", daemon=True
        )
        reader.start()

    # forwarding --------------------------------------------------------------------------------

    def _forward(self, model: str) -> None:
        q = self._queues[model]
        while not self._stopping.is_set():
            self._activate_if_changed(model)
            try:
                first = q.get(timeout=0.5)
            except queue.Empty:
                continue
            # Gather a tenth of a second of traffic: one wake-up (and one pickled message to the
            # worker) per batch, not per request, keeps this thread off the interpreter lock
            # while requests are being answered.
            self._stopping.wait(FORWARD_INTERVAL)
            items = [first]
            rows = len(first[1])
            while rows < MAX_BATCH_ROWS:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                items.append(item)
                rows += len(item[1])
            self._ship(model, items)

    def _ship(self, model: str, items: list[tuple[str, Sequence[Any], BatchResult]]) -> None:
        pool = self.pools[model]
        by_version: dict[int, list[Observations]] = {}
        try:
            self._estimate_accuracy(model, [result for _, _, result in items])
            for request_id, texts, result in items:
                pool.add(
                    request_id, texts, result.version, result.labels, result.probabilities,
                    result.embedding,
                )  # fmt: skip
                by_version.setdefault(result.version, []).append(
                    as_observations(result.embedding, result.probabilities)
                )
            self._metrics.candidate_pool_bytes.labels(model).set(pool.size_bytes)
        finally:
            # Counted as queued until they are in the pool: memory in flight is held all along,
            # and an empty queue with nothing counted means the pool and its gauge are current.
            with self._state_lock:
                self._queued_bytes[model] -= sum(_binary_bytes(p) for _, p, _ in items)
        for version, parts in by_version.items():
            self._activate(model, version)
            self._send(Observe(model, version, Observations.concat(parts), time.time()))

    def _estimate_accuracy(self, model: str, results: list[BatchResult]) -> None:
        # One numpy pass per version per shipment (a tenth of a second of traffic), not one per
        # request: this thread shares the interpreter lock with serving.
        estimate = self.accuracy[model]
        gauge = self._metrics.estimated_accuracy
        runs: list[tuple[int, list[npt.NDArray[np.float32]]]] = []
        for result in results:
            if runs and runs[-1][0] == result.version:
                runs[-1][1].append(result.probabilities)
            else:
                runs.append((result.version, [result.probabilities]))
        for version, parts in runs:
            if version != estimate.version:
                if estimate.version:
                    with contextlib.suppress(KeyError):
                        gauge.remove(model, str(estimate.version))
                        self._metrics.version_held_out_accuracy.remove(model, str(estimate.version))
                calibration = self._calibration(model, version)
                estimate.restart(version, calibration)
                if calibration is not None and not math.isnan(calibration.accuracy):
                    self._metrics.version_held_out_accuracy.labels(model, str(version)).set(
                        calibration.accuracy
                    )
            estimate.add(np.concatenate(parts) if len(parts) > 1 else parts[0])
        if estimate.version:
            gauge.labels(model, str(estimate.version)).set(estimate.value)

    def _calibration(self, model: str, version: int) -> Calibration | None:
        try:
            info = self._models[model].registry.get(version)
        except Exception:  # a version that vanished: estimate uncalibrated
            log.warning("no calibration for %s v%d", model, version, exc_info=True)
            return None
        return info.meta.calibration

    def _activate_if_changed(self, model: str) -> None:
        loaded = self._models[model].serving_version
        if loaded is not None:
            self._activate(model, loaded.version)

    def _activate(self, model: str, version: int) -> None:
        with self._state_lock:
            if self._activated.get(model) == version:
                return
            self._activated[model] = version
        served = self._models[model]
        recipe = self._recipes[model]
        reference = None
        if "training" in _references(recipe):
            info = served.registry.get(version)
            reference = ReferenceInputs(
                onnx_path=info.path / "model.onnx",
                version_dir=info.path,
                meta=info.meta,
                items=self._reference_texts(model, info, recipe.reference_size),
            )
        log.info("drift monitoring of %s follows version %d", model, version)
        self._send(Activate(model, version, reference))

    def _send(self, message: object) -> None:
        with self._send_lock:
            inbox = self._inbox
            if inbox is None:
                return
            # If the worker died, the reader restarts it and the forwarders re-activate.
            with contextlib.suppress(BrokenPipeError, OSError):
                inbox.send(message)

    # results -----------------------------------------------------------------------------------

    def _read(self, outbox: Connection, worker: Any) -> None:
        while True:
            try:
                message = outbox.recv()
            except (EOFError, OSError):
                break
            if isinstance(message, Statuses):
                self._update(message.model, message.statuses, message.traffic_rate)
            elif isinstance(message, ProjectionReady):
                self.pools[message.model].set_projection(message.version, message.projection)
        if self._stopping.is_set():
            return
        code = getattr(worker, "exitcode", None)
        log.error("drift worker exited (code %s)", code)
        for model, statuses in list(self._statuses.items()):
            failed = [
                _replace_state(s, DetectorState.FAILED, f"drift worker exited (code {code})")
                for s in statuses.values()
            ]
            self._update(model, failed)
        if self._restarts < len(RESTART_DELAYS):
            delay = RESTART_DELAYS[self._restarts]
            self._restarts += 1
            if not self._stopping.wait(delay):
                self._start_worker()

    def _update(
        self, model: str, statuses: list[DetectorStatus], traffic_rate: float = math.nan
    ) -> None:
        m = self._metrics
        with self._state_lock:
            previous = self._statuses[model]
            self._statuses[model] = {s.detector: s for s in statuses}
            if not math.isnan(traffic_rate):
                self._rates[model] = traffic_rate
                m.drift_traffic_rate.labels(model).set(traffic_rate)
        for status in statuses:
            labels = (model, status.detector)
            before = previous.get(status.detector)
            scored = status.samples_seen - (
                before.samples_seen if before and before.version == status.version else 0
            )
            if scored > 0:
                m.drift_scored.labels(*labels).inc(scored)
            m.drift_statistic.labels(*labels).set(status.statistic)
            m.drift_threshold.labels(*labels).set(status.threshold)
            m.drift_detector_alarm.labels(*labels).set(int(status.alarm))
            m.drift_effect.labels(*labels).set(status.effect)
            for state in DetectorState:
                m.drift_state.labels(*labels, state.value).set(int(status.state is state))
            if status.calibration_seconds is not None:
                m.drift_calibration_seconds.labels(*labels).set(status.calibration_seconds)
            was_alarm = before is not None and before.alarm
            if status.state is DetectorState.FAILED:
                continue  # a failed detector knows nothing: its alarm neither rose nor cleared
            if status.alarm != was_alarm and self.on_signal is not None:
                try:
                    self.on_signal(status, status.alarm)
                except Exception:  # a failing hook must not stop monitoring
                    log.exception("drift signal hook failed")
        self._update_model_alarm(model, statuses)

    def _update_model_alarm(self, model: str, statuses: list[DetectorStatus]) -> None:
        """The model-level alarm: raised while any budgeted detector's alarm is raised (a failed
        detector keeps its last known alarm)."""
        alarm = any(s.alarm for s in statuses if s.budgeted)
        with self._state_lock:
            changed = alarm != self._alarms[model]
            self._alarms[model] = alarm
        self._metrics.drift_alarm.labels(model).set(int(alarm))
        if changed and self.on_alarm is not None:
            try:
                self.on_alarm(self.status(model), alarm)
            except Exception:  # a failing hook must not stop monitoring
                log.exception("drift alarm hook failed")

    # queries -----------------------------------------------------------------------------------

    def status(self, model: str) -> DriftStatus:
        served = self._served(model)
        loaded = served.serving_version
        version = loaded.version if loaded is not None else 0
        if model not in self._models:
            return DriftStatus(model, version, alarm=False, enabled=False)
        with self._state_lock:
            statuses = list(self._statuses[model].values())
            dropped = self._dropped[model]
            alarm = self._alarms[model]
            rate = self._rates[model]
        if not statuses:
            statuses = [
                DetectorStatus(
                    model,
                    name,
                    "",
                    version,
                    DetectorState.CALIBRATING,
                    message="waiting for the drift worker",
                )
                for name in self._recipes[model].detectors
            ]
        recipe = self._recipes[model]
        return DriftStatus(
            model=model,
            version=version,
            alarm=alarm,
            detectors=sorted(statuses, key=lambda s: s.detector),
            samples_dropped=dropped,
            estimated_accuracy=self.accuracy[model].value,
            false_alarm_every_hours=recipe.false_alarm_every_hours,
            traffic_rate=recipe.traffic_rate or rate,
        )

    def candidates(self, model: str, count: int) -> list[Candidate]:
        self._served(model)
        pool = self.pools.get(model)
        return pool.top(count, CANDIDATE_CONTENT_BYTES) if pool is not None else []

    def recent_inputs(self, model: str, count: int) -> list[str | bytes]:
        """Up to ``count`` distinct recent served inputs, newest first: texts, or the bytes of
        binary inputs (images)."""
        pool = self.pools.get(model)
        return pool.recent(count) if pool is not None else []

    def forget(self, model: str, prediction_ids: set[str]) -> None:
        pool = self.pools.get(model)
        if pool is not None:
            pool.forget(prediction_ids)

    def restore(self, model: str, prediction_ids: set[str]) -> None:
        """Labeling candidates again: their labels were undone."""
        pool = self.pools.get(model)
        if pool is not None:
            pool.restore(prediction_ids)

    def _served(self, model: str) -> MonitoredModel:
        try:
            return self._all_models[model]
        except KeyError:
            raise NotFound(f"unknown model {model!r}") from None


class AccuracyEstimate:
    """Label-free accuracy of one version over its last ``window`` served texts: the mean
    calibrated top-class probability (see :mod:`service.calibration`)."""

    def __init__(self, window: int) -> None:
        self.version = 0
        self._temperature = 1.0
        self._confidence: collections.deque[float] = collections.deque(maxlen=window)

    def restart(self, version: int, calibration: Calibration | None) -> None:
        self.version = version
        self._temperature = calibration.temperature if calibration is not None else 1.0
        self._confidence.clear()

    def add(self, probabilities: npt.NDArray[np.float32]) -> None:
        self._confidence.extend(calibrated(probabilities, self._temperature).max(axis=1).tolist())

    @property
    def value(self) -> float:
        """NaN before the first request."""
        return float(np.mean(self._confidence)) if self._confidence else math.nan


def _references(recipe: DriftRecipe) -> set[str]:
    """The reference sources the recipe's detectors use."""
    return {
        recipe.embedding_reference if d == "embedding" else recipe.output_reference
        for d in recipe.detectors
    }


def _check_reference(definition: ModelDefinition) -> None:
    """The training reference passes a version's training texts through it (see
    :func:`~service.drift.training_texts`); a model of other inputs (images) has none to pass,
    so it is refused at start rather than failing each version's detectors later."""
    recipe = definition.drift
    if definition.task == DEFAULT_TASK or "training" not in _references(recipe):
        return
    names = [
        name
        for name in ("embedding_reference", "output_reference")
        if getattr(recipe, name) == "training"
    ]
    raise ConfigError(
        f'model {definition.name!r} [drift] {" and ".join(names)} = "training": the training '
        f"reference is built from training texts, which task {definition.task!r} does not have; "
        'use "traffic" (the version\'s first requests)'
    )


def _binary_bytes(payloads: Sequence[Any]) -> int:
    return sum(len(p) for p in payloads if isinstance(p, bytes))


def _replace_state(status: DetectorStatus, state: DetectorState, message: str) -> DetectorStatus:
    # The alarm keeps its last known value: it clears (with its event) once scoring resumes.
    return replace(status, state=state, message=message)
