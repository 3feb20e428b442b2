"""The drift worker: runs every detector of every model, away from the serving process.

It runs in a spawned, niced process (or, for tests, a thread) and talks to
:class:`~service.drift.DriftMonitor` over a pair of connections. Per model it keeps the detectors
of the serving version: it loads their saved calibration, or builds the reference (the version's
training texts passed through that version, or the first ``reference_size`` observations of its
traffic) and fits them on a background thread, then scores every observation it is sent and keeps
the alarm state. Statuses go back to the monitor at most once a second, and at once on any change
of state or alarm.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import pickle
import threading
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from service.config import DriftRecipe
from service.drift._budget import RateMeter, Significance, significance
from service.drift._contract import Detector
from service.drift._detectors import (
    WindowedTest,
    as_observations,
    build_detectors,
    reference_source,
)
from service.drift._reduce import Projection
from service.drift._types import DetectorState, DetectorStatus, Observations, WindowTest
from service.priority import lower_priority

log = logging.getLogger(__name__)
STATUS_INTERVAL = 1.0
HEARTBEAT_INTERVAL = 5.0
EMBED_CHUNK = 32
ONLINE_METHODS = ("mmd", "lsdd")
SCORE_CHUNK = 10


@dataclass(frozen=True)
class ReferenceTexts:
    """What the worker needs to pass a version's training texts through that version."""

    onnx_path: Path
    tokenizer_path: Path
    labels: list[str]
    max_length: int
    texts: list[str]


@dataclass(frozen=True)
class Activate:
    model: str
    version: int
    reference: ReferenceTexts | None  # None when no detector uses the training reference


@dataclass(frozen=True)
class Observe:
    model: str
    version: int
    observations: Observations
    sent: float = 0.0  # Unix time the monitor shipped them (they arrived within FORWARD_INTERVAL)


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Statuses:
    model: str
    statuses: list[DetectorStatus]
    traffic_rate: float = math.nan  # samples per second the budget is computed with


@dataclass(frozen=True)
class ProjectionReady:
    model: str
    version: int
    projection: Projection


@dataclass(frozen=True)
class WorkerOptions:
    drift_dir: Path
    recipes: dict[str, DriftRecipe]
    threads: int = 1
    nice: int = 10
    log_level: str = "INFO"


@dataclass
class _Alarm:
    """A detector's alarm. Online detectors raise it at the first detection; windowed ones by the
    budget's rules (see ``_budget``): one window below the single-window level, or ``sustain``
    consecutive windows below the sustained level, each with at least the minimum effect. It
    clears once ``clear_after`` samples pass without a detection (a significant window)."""

    clear_after: int
    sustain: int = 1
    active: bool = False
    since: float | None = None
    quiet: int = 0
    run: int = 0

    def window(self, test: WindowTest, levels: Significance, min_effect: float) -> bool:
        """Feed one window test; True when the alarm was raised or cleared by it."""
        meaningful = not test.effect < min_effect  # NaN effect: not measured, so not vetoed
        significant = meaningful and test.p_value < levels.sustained
        self.run = self.run + 1 if significant else 0
        raising = meaningful and (test.p_value < levels.single or self.run >= self.sustain)
        return self.update(significant if self.active else raising, test.size)

    def update(self, detected: bool, samples: int) -> bool:
        """Feed one update; True when the alarm was raised or cleared by it."""
        if detected:
            self.quiet = 0
            if not self.active:
                self.active, self.since = True, time.time()
                return True
            return False
        self.quiet += samples
        if self.active and self.quiet >= self.clear_after:
            self.active, self.since = False, None
            return True
        return False


@dataclass
class _Slot:
    """One detector of one model version."""

    name: str
    method: str
    source: str
    detector: Detector
    alarm: _Alarm
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
                    _Alarm(self.recipe.clear_samples, self.recipe.sustain_windows),
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
        self, slots: list[_Slot], version: int, reference: ReferenceTexts | None
    ) -> None:
        def run() -> None:
            try:
                if reference is None or not reference.texts:
                    raise ValueError("no training texts to build the reference from")
                observations = _embed(reference, self._worker.options.threads)
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
        config = json.dumps(
            {k: v for k, v in asdict(self.recipe).items() if k not in _NOT_CALIBRATION},
            sort_keys=True,
        )
        digest = hashlib.sha256(f"{slot.name}:{config}".encode()).hexdigest()[:12]
        return (
            self._worker.options.drift_dir
            / self.model
            / f"v{self.version}-{slot.name}-{digest}.pkl"
        )

    def _load(self, slot: _Slot) -> Detector | None:
        path = self._path(slot)
        if not path.is_file():
            return None
        try:
            with path.open("rb") as handle:
                detector = pickle.load(handle)  # our own file in the state dir
        except Exception:  # a damaged file is recalibrated, not fatal
            log.warning("ignoring unreadable drift calibration %s", path, exc_info=True)
            return None
        return detector if getattr(detector, "fitted", False) else None

    def _save(self, slot: _Slot) -> None:
        path = self._path(slot)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            with tmp.open("wb") as handle:
                pickle.dump(slot.detector, handle, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except Exception:  # only costs a recalibration after a restart
            log.warning("could not save drift calibration %s", path, exc_info=True)


# Settings that change how observations are queued or alarms are raised and cleared, not the
# calibration itself: changing the budget must not cost a recalibration.
_NOT_CALIBRATION = frozenset(
    {
        "queue_size", "candidate_pool_size", "worker_threads", "worker_nice", "clear_after",
        "false_alarm_every_hours", "traffic_rate", "sustain_windows", "min_effect_embedding",
        "min_effect_confidence", "min_effect_labels", "accuracy_window",
    }
)  # fmt: skip


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


def main(options: WorkerOptions, inbox: Connection, outbox: Connection) -> None:
    """Entry point of the worker process."""
    logging.basicConfig(
        level=options.log_level, format="%(asctime)s %(levelname)s drift-worker %(message)s"
    )
    lower_priority(options.nice)
    _limit_threads(options.threads)
    if not any(r.embedding_method in ONLINE_METHODS for r in options.recipes.values()):
        _without_torch()
    Worker(options, outbox).run(inbox)


def _without_torch() -> None:
    """Keep torch out of this process when only windowed tests run: they need scipy alone, and
    alibi-detect imports torch (about 270 MiB resident) only because it is installed."""
    import sys

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # its "no PyTorch found" notice
    for name in ("torch", "tensorflow"):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # makes `import` fail


def _limit_threads(threads: int) -> None:
    """Set before alibi-detect (and with it torch) is first imported in this process, which
    happens at the first fit. One thread by default: the worker shares the machine with serving,
    and alibi-detect's small tensor ops ran tens of times slower (measured) when two OpenMP
    threads contended for busy cores."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def _embed(reference: ReferenceTexts, threads: int) -> Observations:
    from service.runtime import LoadedVersion, SessionOptions

    session = LoadedVersion(
        model="drift-reference",
        version=0,
        onnx_path=reference.onnx_path,
        tokenizer_path=reference.tokenizer_path,
        labels=reference.labels,
        max_length=reference.max_length,
        options=SessionOptions(intra_op_threads=threads, providers="cpu", thread_spinning=False),
    )
    parts = []
    for start in range(0, len(reference.texts), EMBED_CHUNK):
        prediction = session.predict(reference.texts[start : start + EMBED_CHUNK])
        parts.append(as_observations(prediction.embedding, prediction.probabilities))
    return Observations.concat(parts)


def _head(rows: Observations, n: int) -> Observations:
    return Observations(rows.embeddings[:n], rows.probabilities[:n])
