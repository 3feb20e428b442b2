"""The drift worker: runs every detector of every model, away from the serving process.

It runs in a spawned, niced process (``_process``; for tests, a thread) and talks to
:class:`~service.drift.DriftMonitor` over a pair of connections. Per model it keeps the detectors
of the serving version: it loads their saved calibration, or builds the reference (the version's
training texts passed through that version, or the first ``reference_size`` observations of its
traffic) and fits them on a background thread, then scores every observation it is sent and keeps
the alarm state. Statuses go back to the monitor at most once a second, and at once on any change
of state or alarm.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from service.config import DriftRecipe
from service.drift._alarm import Alarm
from service.drift._budget import RateMeter, Significance, significance
from service.drift._contract import Detector
from service.drift._detectors import (
    WindowedTest,
    build_detectors,
    reference_source,
)
from service.drift._embed import embed_reference
from service.drift._messages import (
    Activate,
    Observe,
    ProjectionReady,
    ReferenceInputs,
    Statuses,
    Stop,
    WorkerOptions,
)
from service.drift._reduce import Projection
from service.drift._saved import load_detector, save_detector, saved_path
from service.drift._types import DetectorState, DetectorStatus, Observations

log = logging.getLogger(__name__)
STATUS_INTERVAL = 1.0
HEARTBEAT_INTERVAL = 5.0
SCORE_CHUNK = 10


@dataclass
class _Slot:
    """One detector of one model version."""

    name: str
    method: str
    source: str
    detector: Detector
    alarm: Alarm
    state: DetectorState = DetectorState.CALIBRATING
    message: str = ""
    calibration_seconds: float | None = None
    collected: list[Observations] = field(default_factory=list)
    fitting: bool = False

    @property
    def collected_rows(self) -> int:
        return sum(len(o) for o in self.collected)


class _ModelDrift:
    def __init__(self, model: str, recipe: DriftRecipe, worker: Worker) -> None:
        self.model = model
        self.recipe = recipe
        self._worker = worker
        self.version = 0
        self.slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._last_sent = 0.0
        self._dirty = False
        self._rate = RateMeter()

    # version changes --------------------------------------------------------------------------

    def activate(self, message: Activate) -> None:
        with self._lock:
            self.version = message.version
            self.slots = {}
            for name, detector in build_detectors(self.recipe).items():
                self.slots[name] = _Slot(
                    name, detector.method, reference_source(self.recipe, name), detector,
                    Alarm(self.recipe.clear_samples, self.recipe.sustain_windows),
                )  # fmt: skip
            pending = []
            for slot in self.slots.values():
                cached = self._load(slot)
                if cached is not None:
                    slot.detector, slot.state = cached, DetectorState.READY
                    slot.message = "calibration loaded from disk"
                    self._projection_ready(slot)
                elif slot.source == "training":
                    slot.fitting, slot.message = True, "embedding the training reference"
                    pending.append(slot)
                else:
                    slot.message = f"collecting {self.recipe.reference_size} traffic samples"
        if pending:
            self._fit_in_background(pending, message.version, message.reference)
        self.send(force=True)

    def _fit_in_background(
        self, slots: list[_Slot], version: int, reference: ReferenceInputs | None
    ) -> None:
        def run() -> None:
            try:
                if reference is None or not reference.items:
                    raise ValueError("no training inputs to build the reference from")
                observations = embed_reference(reference, self._worker.options.threads)
            except Exception as exc:  # reported as the detectors' state
                log.exception("drift reference of %s v%d failed", self.model, version)
                for slot in slots:
                    self._fitted(slot, version, None, 0.0, f"reference failed: {exc}")
                return
            for slot in slots:
                self._fit(slot, version, observations)

        threading.Thread(target=run, name=f"drift-fit-{self.model}", daemon=True).start()

    def _fit(self, slot: _Slot, version: int, reference: Observations) -> None:
        started = time.perf_counter()
        try:
            slot.detector.fit(reference)
        except Exception as exc:  # reported as the detector's state
            log.exception(
                "drift detector %s of %s v%d failed to fit", slot.name, self.model, version
            )
            self._fitted(slot, version, None, time.perf_counter() - started, str(exc))
            return
        self._fitted(slot, version, slot.detector, time.perf_counter() - started, "")

    def _fitted(
        self, slot: _Slot, version: int, detector: Detector | None, seconds: float, error: str
    ) -> None:
        with self._lock:
            if version != self.version or self.slots.get(slot.name) is not slot:
                return  # the version changed while fitting: this calibration is stale
            slot.fitting = False
            slot.calibration_seconds = round(seconds, 2)
            slot.collected = []
            if detector is None:
                slot.state, slot.message = DetectorState.FAILED, error
            else:
                slot.state, slot.message = DetectorState.READY, ""
                self._save(slot)
                self._projection_ready(slot)
                log.info(
                    "drift detector %s of %s v%d ready (%s reference, %d rows) in %.1fs",
                    slot.name, self.model, version, slot.source, detector.reference_size, seconds,
                )  # fmt: skip
        self.send(force=True)

    def _projection_ready(self, slot: _Slot) -> None:
        projection = getattr(slot.detector, "projection", None)
        if isinstance(projection, Projection):
            self._worker.send(ProjectionReady(self.model, self.version, projection))

    # scoring ----------------------------------------------------------------------------------

    def observe(self, message: Observe) -> None:
        # In chunks, with the statuses sent as soon as an alarm changes, so that the alarm
        # carries the sample count it was raised at even when the worker is catching up.
        rows = message.observations
        with self._lock:
            self._rate.add(message.sent or time.time(), len(rows))
        for start in range(0, len(rows), SCORE_CHUNK):
            chunk = Observations(
                rows.embeddings[start : start + SCORE_CHUNK],
                rows.probabilities[start : start + SCORE_CHUNK],
            )
            if not self._observe_chunk(message.version, chunk):
                return

    def _observe_chunk(self, version: int, observations: Observations) -> bool:
        """Score (or collect) one chunk; False when ``version`` is not the monitored one."""
        changed = False
        to_fit: list[tuple[_Slot, Observations]] = []
        with self._lock:
            if version != self.version:
                return False  # served by a version that is no longer (or not yet) monitored
            for slot in self.slots.values():
                if slot.state is DetectorState.READY:
                    changed |= self._score(slot, observations)
                elif slot.source == "traffic" and not slot.fitting:
                    slot.collected.append(observations)
                    if slot.collected_rows >= self.recipe.reference_size:
                        slot.fitting, slot.message = True, "configuring thresholds"
                        rows = Observations.concat(slot.collected)
                        to_fit.append((slot, _head(rows, self.recipe.reference_size)))
        for slot, reference in to_fit:
            threading.Thread(target=self._fit, args=(slot, version, reference), daemon=True).start()
        self._dirty = True
        self.send(force=changed or bool(to_fit))
        return True

    def _score(self, slot: _Slot, observations: Observations) -> bool:
        """Update one detector; True when its alarm or state changed."""
        detector = slot.detector
        levels = self.levels(slot.name) if detector.budgeted else None
        try:
            if isinstance(detector, WindowedTest) and levels is not None:
                detector.alpha = levels.sustained
            detector.update(observations)
        except Exception as exc:
            log.exception("drift detector %s of %s failed to score", slot.name, self.model)
            slot.state, slot.message = DetectorState.FAILED, f"scoring failed: {exc}"
            return True
        if levels is None:
            return slot.alarm.update(detector.drift_detected, len(observations))
        min_effect = self.recipe.min_effect(slot.name)
        changed = False
        for test in detector.tests:
            changed |= slot.alarm.window(test, levels, min_effect)
        return changed

    @property
    def traffic_rate(self) -> float:
        """Samples per second the budget is computed with (configured, else observed)."""
        return self.recipe.traffic_rate or self._rate.rate()

    def levels(self, detector: str) -> Significance:
        rate = self.traffic_rate
        return significance(
            self.recipe.false_alarm_every_hours,
            0.0 if math.isnan(rate) else rate,
            self.recipe.window_of(detector),
            len(self.recipe.budgeted_detectors),
            self.recipe.sustain_windows,
        )

    def send(self, force: bool = False) -> None:
        """Send the statuses now when ``force``; else when they changed and a second passed, or
        every few seconds regardless (a lost update then cannot leave the monitor stale)."""
        with self._lock:  # snapshot and send together: fitting threads also send
            now = time.monotonic()
            waited = now - self._last_sent
            due = (self._dirty and waited >= STATUS_INTERVAL) or waited >= HEARTBEAT_INTERVAL
            if not (force or due):
                return
            self._last_sent, self._dirty = now, False
            statuses = [self._status(slot) for slot in self.slots.values()]
            self._worker.send(Statuses(self.model, statuses, self.traffic_rate))

    def _status(self, slot: _Slot) -> DetectorStatus:
        detector = slot.detector
        ready = slot.state is DetectorState.READY
        message = slot.message
        if (
            slot.state is DetectorState.CALIBRATING
            and slot.source == "traffic"
            and not slot.fitting
        ):
            message = (
                f"collecting traffic reference: {slot.collected_rows}/{self.recipe.reference_size}"
            )
        return DetectorStatus(
            model=self.model,
            detector=slot.name,
            method=slot.method,
            version=self.version,
            state=slot.state,
            statistic=detector.statistic if ready else float("nan"),
            threshold=detector.threshold if ready else float("nan"),
            drift_detected=ready and detector.drift_detected,
            alarm=slot.alarm.active,
            alarm_since=slot.alarm.since,
            samples_seen=detector.samples_seen if ready else 0,
            reference_source=slot.source,
            reference_size=detector.reference_size if ready else 0,
            calibration_seconds=slot.calibration_seconds,
            message=message,
            effect=detector.effect if ready else math.nan,
            min_effect=self.recipe.min_effect(slot.name),
            budgeted=detector.budgeted,
        )

    # saved calibrations -----------------------------------------------------------------------

    def _path(self, slot: _Slot) -> Path:
        return saved_path(
            self._worker.options.drift_dir, self.model, self.version, slot.name, self.recipe
        )

    def _load(self, slot: _Slot) -> Detector | None:
        return load_detector(self._path(slot))

    def _save(self, slot: _Slot) -> None:
        save_detector(self._path(slot), slot.detector)


class Worker:
    def __init__(self, options: WorkerOptions, outbox: Connection) -> None:
        self.options = options
        self._outbox = outbox
        self._send_lock = threading.Lock()
        self.models = {
            name: _ModelDrift(name, recipe, self) for name, recipe in options.recipes.items()
        }

    def send(self, message: object) -> None:
        # The monitor may have gone away; the inbox loop then ends on its own.
        with self._send_lock, contextlib.suppress(BrokenPipeError, OSError):
            self._outbox.send(message)

    def run(self, inbox: Connection) -> None:
        while True:
            try:
                message = inbox.recv() if inbox.poll(STATUS_INTERVAL / 4) else None
            except (EOFError, OSError):
                return
            if isinstance(message, Stop):
                return
            if isinstance(message, Activate):
                self.models[message.model].activate(message)
            elif isinstance(message, Observe):
                self.models[message.model].observe(message)
            for model in self.models.values():
                model.send()


def _head(rows: Observations, n: int) -> Observations:
    return Observations(rows.embeddings[:n], rows.probabilities[:n])
