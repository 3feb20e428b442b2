"""What the console plots over time: drift statistics, estimated accuracy, request rate and
latency, sampled every ``interval_s`` into a bounded window per model.

Prometheus keeps the long history; this is the last hour or so in memory, so that the console
works without one. Sampling reads the same core status the gRPC API answers and the process's
own metric families (one family at a time: cheap, no full registry walk).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import Metric

from service.drift import DriftStatus
from service.metrics import Metrics

log = logging.getLogger(__name__)
DEFAULT_INTERVAL_S = 10.0
DEFAULT_POINTS = 360  # one hour at the default interval


@dataclass(frozen=True)
class DetectorPoint:
    statistic: float
    threshold: float
    alarm: bool


@dataclass(frozen=True)
class Point:
    """One sample of one model."""

    time: float
    version: int
    alarm: bool
    estimated_accuracy: float
    detectors: dict[str, DetectorPoint]
    requests: float  # cumulative ModelInfer calls (all codes)
    latency_buckets: tuple[tuple[float, float], ...]  # cumulative (le, count)


@dataclass(frozen=True)
class Traffic:
    """Requests over the window the history covers."""

    seconds: float
    rate: float  # requests per second; NaN without two points
    p50_ms: float
    p99_ms: float


@dataclass
class History:
    metrics: Metrics
    drift_status: Callable[[str], Awaitable[DriftStatus]]
    models: list[str]
    interval_s: float = DEFAULT_INTERVAL_S
    points: int = DEFAULT_POINTS
    clock: Callable[[], float] = time.time
    _series: dict[str, deque[Point]] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    def series(self, model: str) -> list[Point]:
        return list(self._series.get(model, ()))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="console-history")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.interval_s)

    async def sample(self) -> None:
        """Record one point per model now."""
        now = self.clock()
        requests = _by_model(self.metrics.requests.collect(), "_total")
        buckets = _buckets(self.metrics.request_latency.collect())
        for model in self.models:
            try:
                status = await self.drift_status(model)
            except Exception:  # a model still loading: no point this time
                log.debug("no drift status of %s to record", model, exc_info=True)
                continue
            point = Point(
                time=now,
                version=status.version,
                alarm=status.alarm,
                estimated_accuracy=status.estimated_accuracy,
                detectors={
                    d.detector: DetectorPoint(d.statistic, d.threshold, d.alarm)
                    for d in status.detectors
                },
                requests=requests.get(model, 0.0),
                latency_buckets=tuple(sorted(buckets.get(model, {}).items())),
            )
            self._series.setdefault(model, deque(maxlen=self.points)).append(point)

    def traffic(self, model: str) -> Traffic:
        series = self._series.get(model)
        if not series or len(series) < 2:
            return Traffic(0.0, math.nan, math.nan, math.nan)
        first, last = series[0], series[-1]
        seconds = last.time - first.time
        count = last.requests - first.requests
        before = dict(first.latency_buckets)
        delta = [(le, n - before.get(le, 0.0)) for le, n in last.latency_buckets]
        rate = count / seconds if seconds > 0 else math.nan
        return Traffic(seconds, rate, _quantile(delta, 0.5), _quantile(delta, 0.99))


def _by_model(families: Iterable[Metric], suffix: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for family in families:
        for s in family.samples:
            if s.name.endswith(suffix):
                model = s.labels.get("model", "")
                totals[model] = totals.get(model, 0.0) + s.value
    return totals


def _buckets(families: Iterable[Metric]) -> dict[str, dict[float, float]]:
    out: dict[str, dict[float, float]] = {}
    for family in families:
        for s in family.samples:
            if s.name.endswith("_bucket"):
                out.setdefault(s.labels["model"], {})[float(s.labels["le"])] = s.value
    return out


def _quantile(cumulative: list[tuple[float, float]], q: float) -> float:
    """Milliseconds, interpolated within the bucket as Prometheus' histogram_quantile does."""
    if not cumulative or cumulative[-1][1] <= 0:
        return math.nan
    rank = q * cumulative[-1][1]
    lower_le, lower_n = 0.0, 0.0
    for le, n in cumulative:
        if n >= rank:
            if math.isinf(le):
                return lower_le * 1000
            share = (rank - lower_n) / (n - lower_n) if n > lower_n else 1.0
            return (lower_le + (le - lower_le) * share) * 1000
        lower_le, lower_n = le, n
    return math.nan
