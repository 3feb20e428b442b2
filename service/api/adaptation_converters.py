"""``loopserve.v1.Adaptation`` messages ⇄ closed-loop types. One converter per message.

``to_types`` decodes a protobuf message into :mod:`service.domain.loop`; ``from_types``
encodes types into a message. ``X | None`` fields travel as proto3 ``optional`` scalars or unset
sub-messages, so they round-trip exactly. Version metrics are the exception: only the flat
numeric entries are sent.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from service.api._proto.loopserve.v1 import adaptation_pb2 as pb
from service.domain.int8 import Int8Check
from service.domain.loop import (
    AddOutcome,
    Event,
    EventKind,
    GateResult,
    Job,
    JobState,
    ModelStatus,
    NewSample,
    PurgeOutcome,
    SourceSummary,
    VersionSummary,
)
from service.domain.provenance import SeqRange, SourceData, TrainingData
from service.domain.review import LabelChange, ReviewEvidence
from service.drift import Candidate, DetectorState, DetectorStatus, DriftStatus
from service.errors import InvalidInput, check_length


class SampleConverter:
    @staticmethod
    def to_types(message: pb.Sample) -> NewSample:
        return NewSample(
            text=message.text,
            label=message.label,
            id=message.id,
            prediction_id=message.prediction_id,
            data=message.content,
        )

    @staticmethod
    def from_types(sample: NewSample) -> pb.Sample:
        return pb.Sample(
            text=sample.text,
            label=sample.label,
            id=sample.id,
            prediction_id=sample.prediction_id,
            content=sample.data,
        )


class AddSamplesRequestConverter:
    @staticmethod
    def to_types(
        request: pb.AddSamplesRequest, max_samples: int | None = None
    ) -> tuple[str, list[NewSample]]:
        """With ``max_samples``, a larger batch is refused before any sample is converted: a
        message of millions of tiny samples would otherwise hold the event loop for seconds."""
        count = len(request.samples)
        if max_samples is not None and count > max_samples:
            raise InvalidInput(f"{count} samples in one call; at most {max_samples}")
        return request.model, [SampleConverter.to_types(s) for s in request.samples]

    @staticmethod
    def from_types(model: str, samples: list[NewSample]) -> pb.AddSamplesRequest:
        return pb.AddSamplesRequest(
            model=model, samples=[SampleConverter.from_types(s) for s in samples]
        )


class AddSamplesResponseConverter:
    @staticmethod
    def to_types(message: pb.AddSamplesResponse) -> AddOutcome:
        return AddOutcome(
            accepted=message.accepted, duplicates=message.duplicates, ids=list(message.ids)
        )

    @staticmethod
    def from_types(outcome: AddOutcome) -> pb.AddSamplesResponse:
        return pb.AddSamplesResponse(
            accepted=outcome.accepted, duplicates=outcome.duplicates, ids=outcome.ids
        )


class SampleSourceConverter:
    @staticmethod
    def to_types(message: pb.SampleSource) -> SourceSummary:
        return SourceSummary(
            source=message.source,
            samples=message.samples,
            first_created=message.first_created,
            last_created=message.last_created,
            first_seq=message.first_seq,
            last_seq=message.last_seq,
        )

    @staticmethod
    def from_types(summary: SourceSummary) -> pb.SampleSource:
        return pb.SampleSource(
            source=summary.source,
            samples=summary.samples,
            first_created=summary.first_created,
            last_created=summary.last_created,
            first_seq=summary.first_seq,
            last_seq=summary.last_seq,
        )


class ListSampleSourcesResponseConverter:
    @staticmethod
    def to_types(message: pb.ListSampleSourcesResponse) -> list[SourceSummary]:
        return [SampleSourceConverter.to_types(s) for s in message.sources]

    @staticmethod
    def from_types(sources: list[SourceSummary]) -> pb.ListSampleSourcesResponse:
        return pb.ListSampleSourcesResponse(
            sources=[SampleSourceConverter.from_types(s) for s in sources]
        )


class PurgeSamplesRequestConverter:
    @staticmethod
    def to_types(request: pb.PurgeSamplesRequest) -> tuple[str, str, float | None]:
        """(model, source, since); InvalidInput for an empty or overlong source or a ``since``
        that is not a finite time, before anything is deleted."""
        if not request.source:
            raise InvalidInput("source is empty; name the token whose samples to purge")
        check_length("source", request.source)
        since = request.since if request.HasField("since") else None
        if since is not None and not math.isfinite(since):
            raise InvalidInput(f"since must be a finite Unix time, got {since}")
        return request.model, request.source, since

    @staticmethod
    def from_types(model: str, source: str, since: float | None = None) -> pb.PurgeSamplesRequest:
        return pb.PurgeSamplesRequest(model=model, source=source, since=since)


class PurgeSamplesResponseConverter:
    @staticmethod
    def to_types(message: pb.PurgeSamplesResponse) -> PurgeOutcome:
        return PurgeOutcome(
            model=message.model,
            source=message.source,
            removed=message.removed,
            first_seq=message.first_seq,
            last_seq=message.last_seq,
            versions=list(message.versions),
            jobs=[JobConverter.to_types(job) for job in message.jobs],
        )

    @staticmethod
    def from_types(outcome: PurgeOutcome) -> pb.PurgeSamplesResponse:
        return pb.PurgeSamplesResponse(
            model=outcome.model,
            source=outcome.source,
            removed=outcome.removed,
            first_seq=outcome.first_seq,
            last_seq=outcome.last_seq,
            versions=outcome.versions,
            jobs=[JobConverter.from_types(job) for job in outcome.jobs],
        )


class VersionConverter:
    @staticmethod
    def to_types(message: pb.Version) -> VersionSummary:
        return VersionSummary(
            model=message.model,
            version=message.version,
            parent=message.parent if message.HasField("parent") else None,
            created=message.created,
            status=message.status,
            reason=message.reason,
            samples_upto=message.samples_upto,
            metrics=dict(message.metrics),
            review=(
                ReviewEvidenceConverter.to_types(message.review)
                if message.HasField("review")
                else None
            ),
            serving_file=message.serving_file,
            int8=Int8CheckConverter.to_types(message.int8) if message.HasField("int8") else None,
        )

    @staticmethod
    def from_types(summary: VersionSummary) -> pb.Version:
        return pb.Version(
            model=summary.model,
            version=summary.version,
            parent=summary.parent,
            created=summary.created,
            status=summary.status,
            reason=summary.reason,
            samples_upto=summary.samples_upto,
            metrics=numeric_metrics(summary.metrics),
            review=(
                None
                if summary.review is None
                else ReviewEvidenceConverter.from_types(summary.review)
            ),
            serving_file=summary.serving_file,
            int8=None if summary.int8 is None else Int8CheckConverter.from_types(summary.int8),
        )


class Int8CheckConverter:
    """Field for field: the message mirrors :class:`Int8Check`."""

    @staticmethod
    def to_types(message: pb.Int8Check) -> Int8Check:
        return Int8Check(
            **{f.name: getattr(message, f.name) for f in dataclasses.fields(Int8Check)}
        )

    @staticmethod
    def from_types(check: Int8Check) -> pb.Int8Check:
        return pb.Int8Check(**dataclasses.asdict(check))


class ReviewEvidenceConverter:
    @staticmethod
    def to_types(message: pb.ReviewEvidence) -> ReviewEvidence:
        return ReviewEvidence(
            sources=dict(message.sources),
            trusted=message.trusted,
            known_samples=message.known_samples,
            confident_disagreement=message.confident_disagreement,
            disagreement_by_source=dict(message.disagreement_by_source),
            trigger=message.trigger,
            trigger_share=message.trigger_share,
            cluster_share=message.cluster_share,
            cluster_reference_share=message.cluster_reference_share,
            traffic=message.traffic,
            flip_rate=message.flip_rate,
            flip_trigger=message.flip_trigger,
            contradictions=tuple(_change(c) for c in message.contradictions),
            flips=tuple(_change(c) for c in message.flips),
            reasons=tuple(message.reasons),
            other_holdout=message.other_holdout,
            other_candidate=message.other_candidate,
            other_incumbent=message.other_incumbent,
            other_margin=message.other_margin,
        )

    @staticmethod
    def from_types(review: ReviewEvidence) -> pb.ReviewEvidence:
        return pb.ReviewEvidence(
            sources=review.sources,
            trusted=review.trusted,
            known_samples=review.known_samples,
            confident_disagreement=review.confident_disagreement,
            disagreement_by_source=review.disagreement_by_source,
            trigger=review.trigger,
            trigger_share=review.trigger_share,
            cluster_share=review.cluster_share,
            cluster_reference_share=review.cluster_reference_share,
            traffic=review.traffic,
            flip_rate=review.flip_rate,
            flip_trigger=review.flip_trigger,
            contradictions=[_label_change(c) for c in review.contradictions],
            flips=[_label_change(c) for c in review.flips],
            reasons=list(review.reasons),
            other_holdout=review.other_holdout,
            other_candidate=review.other_candidate,
            other_incumbent=review.other_incumbent,
            other_margin=review.other_margin,
        )


def _change(message: pb.LabelChange) -> LabelChange:
    return LabelChange(message.before, message.after, message.count, tuple(message.examples))


def _label_change(change: LabelChange) -> pb.LabelChange:
    return pb.LabelChange(
        before=change.before, after=change.after, count=change.count, examples=change.examples
    )


class ListVersionsResponseConverter:
    @staticmethod
    def to_types(message: pb.ListVersionsResponse) -> list[VersionSummary]:
        return [VersionConverter.to_types(v) for v in message.versions]

    @staticmethod
    def from_types(versions: list[VersionSummary]) -> pb.ListVersionsResponse:
        return pb.ListVersionsResponse(versions=[VersionConverter.from_types(v) for v in versions])


class GateResultConverter:
    @staticmethod
    def to_types(message: pb.GateResult) -> GateResult:
        return GateResult(
            candidate_new=message.candidate_new,
            incumbent_new=message.incumbent_new,
            candidate_anchor=message.candidate_anchor,
            incumbent_anchor=message.incumbent_anchor,
            new_examples=message.new_examples,
            anchor_examples=message.anchor_examples,
            promote=message.promote,
            reason=message.reason,
            new_margin=message.new_margin,
            anchor_margin=message.anchor_margin,
            anchor_held_out=message.anchor_held_out,
        )

    @staticmethod
    def from_types(gate: GateResult) -> pb.GateResult:
        return pb.GateResult(
            candidate_new=gate.candidate_new,
            incumbent_new=gate.incumbent_new,
            candidate_anchor=gate.candidate_anchor,
            incumbent_anchor=gate.incumbent_anchor,
            new_examples=gate.new_examples,
            anchor_examples=gate.anchor_examples,
            promote=gate.promote,
            reason=gate.reason,
            forgetting=gate.forgetting,
            new_margin=gate.new_margin,
            anchor_margin=gate.anchor_margin,
            anchor_held_out=gate.anchor_held_out,
        )


class JobConverter:
    @staticmethod
    def to_types(message: pb.Job) -> Job:
        return Job(
            id=message.id,
            model=message.model,
            state=JobState(message.state),
            trigger=message.trigger,
            reason=message.reason,
            base_version=message.base_version,
            samples_upto=message.samples_upto,
            created=message.created,
            started=message.started if message.HasField("started") else None,
            finished=message.finished if message.HasField("finished") else None,
            candidate_version=(
                message.candidate_version if message.HasField("candidate_version") else None
            ),
            gate=GateResultConverter.to_types(message.gate) if message.HasField("gate") else None,
            error=message.error,
            attempt=message.attempt,
            data=TrainingDataConverter.to_types(message.data) if message.HasField("data") else None,
        )

    @staticmethod
    def from_types(job: Job) -> pb.Job:
        return pb.Job(
            id=job.id,
            model=job.model,
            state=job.state.value,
            trigger=job.trigger,
            reason=job.reason,
            base_version=job.base_version,
            samples_upto=job.samples_upto,
            attempt=job.attempt,
            created=job.created,
            started=job.started,
            finished=job.finished,
            candidate_version=job.candidate_version,
            gate=GateResultConverter.from_types(job.gate) if job.gate is not None else None,
            error=job.error,
            data=TrainingDataConverter.from_types(job.data) if job.data is not None else None,
        )


class TrainingDataConverter:
    @staticmethod
    def to_types(message: pb.TrainingData) -> TrainingData:
        return TrainingData(
            tuple(
                SourceData(
                    source=s.source,
                    samples=s.samples,
                    first_created=s.first_created,
                    last_created=s.last_created,
                    seqs=tuple(SeqRange(r.first, r.last) for r in s.seqs),
                )
                for s in message.sources
            ),
            purges_seen=message.purges_seen,
        )

    @staticmethod
    def from_types(data: TrainingData) -> pb.TrainingData:
        return pb.TrainingData(
            sources=[
                pb.TrainingData.Source(
                    source=s.source,
                    samples=s.samples,
                    first_created=s.first_created,
                    last_created=s.last_created,
                    seqs=[pb.TrainingData.SeqRange(first=r.first, last=r.last) for r in s.seqs],
                )
                for s in data.sources
            ],
            purges_seen=data.purges_seen,
        )


class ModelStatusConverter:
    @staticmethod
    def to_types(message: pb.ModelStatus) -> ModelStatus:
        return ModelStatus(
            model=message.model,
            serving_version=message.serving_version,
            samples_since_version=message.samples_since_version,
            labels=list(message.labels),
            job=JobConverter.to_types(message.job) if message.HasField("job") else None,
            last_gate=(
                GateResultConverter.to_types(message.last_gate)
                if message.HasField("last_gate")
                else None
            ),
            needs_adaptation=message.needs_adaptation,
            backoff_until=message.backoff_until if message.HasField("backoff_until") else None,
        )

    @staticmethod
    def from_types(status: ModelStatus) -> pb.ModelStatus:
        return pb.ModelStatus(
            model=status.model,
            serving_version=status.serving_version,
            samples_since_version=status.samples_since_version,
            labels=status.labels,
            job=JobConverter.from_types(status.job) if status.job is not None else None,
            last_gate=(
                GateResultConverter.from_types(status.last_gate)
                if status.last_gate is not None
                else None
            ),
            needs_adaptation=status.needs_adaptation,
            backoff_until=status.backoff_until,
        )


class EventConverter:
    @staticmethod
    def to_types(message: pb.Event) -> Event:
        return Event(
            kind=EventKind(message.kind),
            model=message.model,
            time=message.time,
            message=message.message,
            attributes=dict(message.attributes),
        )

    @staticmethod
    def from_types(event: Event) -> pb.Event:
        return pb.Event(
            kind=event.kind.value,
            model=event.model,
            time=event.time,
            message=event.message,
            attributes=event.attributes,
        )


class DetectorStatusConverter:
    @staticmethod
    def to_types(message: pb.DetectorStatus, model: str) -> DetectorStatus:
        return DetectorStatus(
            model=model,
            detector=message.detector,
            method=message.method,
            version=message.version,
            state=DetectorState(message.state),
            statistic=message.statistic if message.HasField("statistic") else math.nan,
            threshold=message.threshold if message.HasField("threshold") else math.nan,
            drift_detected=message.drift_detected,
            alarm=message.alarm,
            alarm_since=message.alarm_since if message.HasField("alarm_since") else None,
            samples_seen=message.samples_seen,
            reference_source=message.reference_source,
            reference_size=message.reference_size,
            calibration_seconds=(
                message.calibration_seconds if message.HasField("calibration_seconds") else None
            ),
            message=message.message,
            effect=message.effect if message.HasField("effect") else math.nan,
            min_effect=message.min_effect,
            budgeted=message.budgeted,
        )

    @staticmethod
    def from_types(status: DetectorStatus) -> pb.DetectorStatus:
        return pb.DetectorStatus(
            detector=status.detector,
            method=status.method,
            version=status.version,
            state=status.state.value,
            statistic=_finite(status.statistic),
            threshold=_finite(status.threshold),
            drift_detected=status.drift_detected,
            alarm=status.alarm,
            alarm_since=status.alarm_since,
            samples_seen=status.samples_seen,
            reference_source=status.reference_source,
            reference_size=status.reference_size,
            calibration_seconds=status.calibration_seconds,
            message=status.message,
            effect=_finite(status.effect),
            min_effect=status.min_effect,
            budgeted=status.budgeted,
        )


class DriftStatusConverter:
    @staticmethod
    def to_types(message: pb.DriftStatus) -> DriftStatus:
        return DriftStatus(
            model=message.model,
            version=message.version,
            alarm=message.alarm,
            detectors=[
                DetectorStatusConverter.to_types(d, message.model) for d in message.detectors
            ],
            samples_dropped=message.samples_dropped,
            enabled=message.enabled,
            estimated_accuracy=(
                message.estimated_accuracy if message.HasField("estimated_accuracy") else math.nan
            ),
            false_alarm_every_hours=message.false_alarm_every_hours or math.nan,
            traffic_rate=message.traffic_rate if message.HasField("traffic_rate") else math.nan,
        )

    @staticmethod
    def from_types(status: DriftStatus) -> pb.DriftStatus:
        return pb.DriftStatus(
            model=status.model,
            version=status.version,
            enabled=status.enabled,
            alarm=status.alarm,
            detectors=[DetectorStatusConverter.from_types(d) for d in status.detectors],
            samples_dropped=status.samples_dropped,
            estimated_accuracy=_finite(status.estimated_accuracy),
            false_alarm_every_hours=_finite(status.false_alarm_every_hours) or 0.0,
            traffic_rate=_finite(status.traffic_rate),
        )


class LabelingCandidateConverter:
    @staticmethod
    def to_types(message: pb.LabelingCandidate) -> Candidate:
        return Candidate(
            prediction_id=message.prediction_id,
            text=message.text,
            version=message.version,
            predicted_label=message.predicted_label,
            confidence=message.confidence,
            atypicality=message.atypicality if message.HasField("atypicality") else math.nan,
            score=message.score,
            content=message.content,
        )

    @staticmethod
    def from_types(candidate: Candidate) -> pb.LabelingCandidate:
        return pb.LabelingCandidate(
            prediction_id=candidate.prediction_id,
            text=candidate.text,
            version=candidate.version,
            predicted_label=candidate.predicted_label,
            confidence=candidate.confidence,
            atypicality=_finite(candidate.atypicality),
            score=candidate.score,
            content=candidate.content,
        )


class GetLabelingCandidatesResponseConverter:
    @staticmethod
    def to_types(message: pb.GetLabelingCandidatesResponse) -> list[Candidate]:
        return [LabelingCandidateConverter.to_types(c) for c in message.candidates]

    @staticmethod
    def from_types(candidates: list[Candidate]) -> pb.GetLabelingCandidatesResponse:
        return pb.GetLabelingCandidatesResponse(
            candidates=[LabelingCandidateConverter.from_types(c) for c in candidates]
        )


def _finite(value: float) -> float | None:
    """NaN (no value yet) travels as an absent optional field."""
    return None if math.isnan(value) else value


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The flat numeric entries of a version's metrics (booleans, None and nested ones left out)."""
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
