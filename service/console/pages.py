"""What each console page shows, as typed data read through the core services (the same ones
gRPC calls): one async function per page, rendered by ``app`` and tested without a browser.

``can_label`` and ``can_admin`` say which actions the page offers; the routes check the scopes
again (a button that is absent is not a permission check).
"""

from __future__ import annotations

import asyncio
import calendar
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import Metric

from service.adaptation.loop import AdaptationService
from service.console._history import History, Point, Traffic
from service.domain.loop import Job, ModelStatus, SourceSummary, VersionSummary
from service.drift import Candidate, DetectorStatus
from service.inference import InferenceService
from service.metrics import Metrics
from service.security import Principal, Scope

QUEUE_SIZE = 50  # candidates the labeling page loads at once


@dataclass(frozen=True)
class Core:
    """The services the console reads and writes through."""

    adaptation: AdaptationService
    inference: InferenceService
    metrics: Metrics
    history: History

    @property
    def models(self) -> list[str]:
        return self.inference.model_names


# --- overview -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelOverview:
    model: str
    serving_version: int
    promoted: str  # when the serving version was made (UTC, ISO 8601)
    traffic: Traffic
    drift_enabled: bool
    alarm: bool
    estimated_accuracy: float
    live_accuracy: float
    labels_since_version: int
    job: Job | None
    job_seconds: float  # the job's time so far (running) or in all
    next_step: str


async def overview(core: Core) -> list[ModelOverview]:
    return [await model_overview(core, model) for model in core.models]


async def model_overview(core: Core, model: str) -> ModelOverview:
    status = await core.adaptation.model_status(model)
    drift = await core.adaptation.drift_status(model)
    versions = await core.adaptation.list_versions(model)
    serving = next(v for v in versions if v.version == status.serving_version)
    return ModelOverview(
        model=model,
        serving_version=status.serving_version,
        promoted=serving.created,
        traffic=core.history.traffic(model),
        drift_enabled=drift.enabled,
        alarm=drift.alarm,
        estimated_accuracy=drift.estimated_accuracy,
        live_accuracy=live_accuracy(core.metrics, model).get(status.serving_version, math.nan),
        labels_since_version=status.samples_since_version,
        job=status.job,
        job_seconds=_job_seconds(status.job) if status.job is not None else 0.0,
        next_step=next_step(core, status),
    )


def live_accuracy(metrics: Metrics, model: str) -> dict[int, float]:
    """Per version, the accuracy of its served predictions against labels posted later."""
    return _per_version(metrics.online_accuracy.collect(), model)


def _per_version(families: Iterable[Metric], model: str) -> dict[int, float]:
    return {
        int(s.labels["version"]): s.value
        for family in families
        for s in family.samples
        if s.labels.get("model") == model and s.labels.get("version", "").isdigit()
    }


def next_step(core: Core, status: ModelStatus) -> str:
    """What the fine-tune policy does next, in words."""
    recipe = core.inference.model(status.model).definition.adaptation
    job = status.job
    if job is not None and not job.state.finished:
        return f"fine-tune job {job.id} is {job.state.value}"
    if status.backoff_until is not None and status.backoff_until > time.time():
        when = time.strftime("%H:%M:%S", time.gmtime(status.backoff_until))
        return f"the last job failed: no new job before {when} UTC"
    missing = recipe.min_new_samples - status.samples_since_version
    if status.needs_adaptation:
        return f"drift alarm: a fine-tune starts after {recipe.drift_min_samples} labels since it"
    if missing > 0:
        return (
            f"a fine-tune starts after {missing} more new labels ({recipe.min_new_samples} in all)"
        )
    return "a fine-tune starts once the labels stop arriving"


# --- labeling -------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueItem:
    prediction_id: str
    text: str  # empty for an image
    image: bool
    suggestion: str
    confidence: float
    score: float


@dataclass(frozen=True)
class LabelingPage:
    model: str
    can_label: bool
    labels: list[str]
    items: list[QueueItem]
    labels_since_version: int
    serving_version: int
    next_step: str


async def labeling(core: Core, model: str, principal: Principal) -> LabelingPage:
    """The queue, most worth labeling first. Candidates are served inputs: like
    GetLabelingCandidates, they are shown only to a token with the ``label`` scope."""
    status = await core.adaptation.model_status(model)
    can_label = Scope.LABEL in principal.scopes
    candidates = await core.adaptation.labeling_candidates(model, QUEUE_SIZE) if can_label else []
    return LabelingPage(
        model=model,
        can_label=can_label,
        labels=status.labels,
        items=[_item(c) for c in candidates],
        labels_since_version=status.samples_since_version,
        serving_version=status.serving_version,
        next_step=next_step(core, status),
    )


def _item(candidate: Candidate) -> QueueItem:
    return QueueItem(
        prediction_id=candidate.prediction_id,
        text=candidate.text,
        image=bool(candidate.content),
        suggestion=candidate.predicted_label,
        confidence=candidate.confidence,
        score=candidate.score,
    )


async def candidate(core: Core, model: str, prediction_id: str) -> Candidate | None:
    """A queued candidate by its prediction id (None once it left the pool)."""
    found = await core.adaptation.labeling_candidates(model, 1000)
    return next((c for c in found if c.prediction_id == prediction_id), None)


# --- versions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionRow:
    summary: VersionSummary
    trigger: str
    holdout: float  # the candidate on new-data holdout (first version: validation accuracy)
    anchor: float  # the candidate on the old-data anchor
    incumbent_holdout: float
    incumbent_anchor: float
    live: float
    estimated: float
    seconds: float

    @property
    def verdict(self) -> str:
        return self.summary.status


@dataclass(frozen=True)
class VersionsPage:
    model: str
    serving_version: int
    rows: list[VersionRow]  # newest first
    can_admin: bool


async def versions(core: Core, model: str, principal: Principal) -> VersionsPage:
    summaries = await core.adaptation.list_versions(model)
    live = live_accuracy(core.metrics, model)
    estimated = _estimated_by_version(core.history.series(model))
    serving = next((v.version for v in summaries if v.status == "serving"), 0)
    rows = [_row(s, live, estimated) for s in sorted(summaries, key=lambda s: -s.version)]
    return VersionsPage(model, serving, rows, Scope.ADMIN in principal.scopes)


def _row(s: VersionSummary, live: dict[int, float], estimated: dict[int, float]) -> VersionRow:
    m = s.metrics
    return VersionRow(
        summary=s,
        trigger=s.reason.split(":", 1)[0] if s.parent is not None else "first version",
        holdout=float(m.get("gate_candidate_new", m.get("validation_accuracy", math.nan))),
        anchor=float(m.get("gate_candidate_anchor", math.nan)),
        incumbent_holdout=float(m.get("gate_incumbent_new", math.nan)),
        incumbent_anchor=float(m.get("gate_incumbent_anchor", math.nan)),
        live=live.get(s.version, math.nan),
        estimated=estimated.get(s.version, math.nan),
        seconds=float(m.get("job_seconds", math.nan)),
    )


def _estimated_by_version(points: list[Point]) -> dict[int, float]:
    """The latest estimate recorded while each version served."""
    out: dict[int, float] = {}
    for p in points:
        if not math.isnan(p.estimated_accuracy):
            out[p.version] = p.estimated_accuracy
    return out


@dataclass(frozen=True)
class RollbackPreview:
    """What a rollback would change, for its confirmation."""

    model: str
    current: VersionRow
    target: VersionRow


async def rollback_preview(
    core: Core, model: str, version: int, principal: Principal
) -> RollbackPreview | None:
    page = await versions(core, model, principal)
    by_version = {r.summary.version: r for r in page.rows}
    if version not in by_version or page.serving_version not in by_version:
        return None
    return RollbackPreview(model, by_version[page.serving_version], by_version[version])


# --- drift ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftPage:
    model: str
    enabled: bool
    alarm: bool
    version: int
    version_created: str  # the reference is drawn for the serving version
    reference_age_s: float  # since that version was made (NaN: unknown)
    detectors: list[DetectorStatus]
    estimated_accuracy: float
    series: dict[str, list[list[float]]]  # per detector: [times, statistics, thresholds, alarms]
    accuracy_series: list[list[float]]  # [times, estimated accuracy]


async def drift(core: Core, model: str) -> DriftPage:
    status = await core.adaptation.drift_status(model)
    summaries = await core.adaptation.list_versions(model)
    created = next((s.created for s in summaries if s.version == status.version), "")
    points = core.history.series(model)
    return DriftPage(
        model=model,
        enabled=status.enabled,
        alarm=status.alarm,
        version=status.version,
        version_created=created,
        reference_age_s=_age(created),
        detectors=status.detectors,
        estimated_accuracy=status.estimated_accuracy,
        series={d.detector: _detector_series(points, d.detector) for d in status.detectors},
        accuracy_series=[[p.time for p in points], [_js(p.estimated_accuracy) for p in points]],
    )


def _age(created: str) -> float:
    """Seconds since a version's ``created`` time (UTC, ISO 8601); NaN when unreadable."""
    try:
        made = calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return math.nan
    return max(0.0, time.time() - made)


def _detector_series(points: list[Point], detector: str) -> list[list[float]]:
    kept = [(p.time, p.detectors[detector]) for p in points if detector in p.detectors]
    return [
        [t for t, _ in kept],
        [_js(d.statistic) for _, d in kept],
        [_js(d.threshold) for _, d in kept],
        [1.0 if d.alarm else 0.0 for _, d in kept],
    ]


def _js(value: float) -> float:
    """NaN and infinities do not survive JSON: uPlot draws a gap for null, sent as NaN → -1."""
    return value if math.isfinite(value) else -1.0


# --- sources --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceRow:
    summary: SourceSummary
    versions: list[int]  # versions trained on its samples


@dataclass(frozen=True)
class SourcesPage:
    model: str
    rows: list[SourceRow]
    can_admin: bool


async def sources(core: Core, model: str, principal: Principal) -> SourcesPage:
    summaries = await core.adaptation.sample_sources(model)
    rows = [
        SourceRow(s, await core.adaptation.versions_trained_on(model, s.source)) for s in summaries
    ]
    return SourcesPage(model, rows, Scope.ADMIN in principal.scopes)


async def source(core: Core, model: str, name: str) -> SourceRow | None:
    """One source, for the purge confirmation (None when it has no samples)."""
    summaries = await core.adaptation.sample_sources(model)
    found = next((s for s in summaries if s.source == name), None)
    if found is None:
        return None
    return SourceRow(found, await core.adaptation.versions_trained_on(model, name))


# --- jobs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    job: Job
    log_tail: str
    seconds: float  # running so far, or in all

    @property
    def cancellable(self) -> bool:
        return not self.job.state.finished and not self.job.cancel_requested


@dataclass(frozen=True)
class JobsPage:
    model: str
    rows: list[JobRow]
    can_admin: bool


async def jobs(core: Core, model: str, principal: Principal) -> JobsPage:
    found = await core.adaptation.recent_jobs(model)
    tails = [await asyncio.to_thread(core.adaptation.job_log_tail, j.id) for j in found]
    rows = [JobRow(j, tail, _job_seconds(j)) for j, tail in zip(found, tails, strict=True)]
    return JobsPage(model, rows, Scope.ADMIN in principal.scopes)


def _job_seconds(job: Job) -> float:
    if job.started is None:
        return 0.0
    return (job.finished or time.time()) - job.started
