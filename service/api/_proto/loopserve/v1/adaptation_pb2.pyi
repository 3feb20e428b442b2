from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, models: _Optional[_Iterable[str]] = ...) -> None: ...

class Sample(_message.Message):
    __slots__ = ("text", "label", "id", "prediction_id", "content")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    text: str
    label: str
    id: str
    prediction_id: str
    content: bytes
    def __init__(self, text: _Optional[str] = ..., label: _Optional[str] = ..., id: _Optional[str] = ..., prediction_id: _Optional[str] = ..., content: _Optional[bytes] = ...) -> None: ...

class AddSamplesRequest(_message.Message):
    __slots__ = ("model", "samples")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    model: str
    samples: _containers.RepeatedCompositeFieldContainer[Sample]
    def __init__(self, model: _Optional[str] = ..., samples: _Optional[_Iterable[_Union[Sample, _Mapping]]] = ...) -> None: ...

class AddSamplesResponse(_message.Message):
    __slots__ = ("accepted", "duplicates", "ids")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListSampleSourcesRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class SampleSource(_message.Message):
    __slots__ = ("source", "samples", "first_created", "last_created", "first_seq", "last_seq")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    FIRST_CREATED_FIELD_NUMBER: _ClassVar[int]
    LAST_CREATED_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    source: str
    samples: int
    first_created: float
    last_created: float
    first_seq: int
    last_seq: int
    def __init__(self, source: _Optional[str] = ..., samples: _Optional[int] = ..., first_created: _Optional[float] = ..., last_created: _Optional[float] = ..., first_seq: _Optional[int] = ..., last_seq: _Optional[int] = ...) -> None: ...

class ListSampleSourcesResponse(_message.Message):
    __slots__ = ("sources",)
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.RepeatedCompositeFieldContainer[SampleSource]
    def __init__(self, sources: _Optional[_Iterable[_Union[SampleSource, _Mapping]]] = ...) -> None: ...

class PurgeSamplesRequest(_message.Message):
    __slots__ = ("model", "source", "since")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    model: str
    source: str
    since: float
    def __init__(self, model: _Optional[str] = ..., source: _Optional[str] = ..., since: _Optional[float] = ...) -> None: ...

class PurgeSamplesResponse(_message.Message):
    __slots__ = ("model", "source", "removed", "first_seq", "last_seq", "versions", "jobs")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    model: str
    source: str
    removed: int
    first_seq: int
    last_seq: int
    versions: _containers.RepeatedScalarFieldContainer[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, model: _Optional[str] = ..., source: _Optional[str] = ..., removed: _Optional[int] = ..., first_seq: _Optional[int] = ..., last_seq: _Optional[int] = ..., versions: _Optional[_Iterable[int]] = ..., jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class Version(_message.Message):
    __slots__ = ("model", "version", "parent", "created", "status", "reason", "samples_upto", "metrics", "review", "serving_file", "int8")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_UPTO_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    SERVING_FILE_FIELD_NUMBER: _ClassVar[int]
    INT8_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    parent: int
    created: str
    status: str
    reason: str
    samples_upto: int
    metrics: _containers.ScalarMap[str, float]
    review: ReviewEvidence
    serving_file: str
    int8: Int8Check
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., parent: _Optional[int] = ..., created: _Optional[str] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., samples_upto: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., review: _Optional[_Union[ReviewEvidence, _Mapping]] = ..., serving_file: _Optional[str] = ..., int8: _Optional[_Union[Int8Check, _Mapping]] = ...) -> None: ...

class Int8Check(_message.Message):
    __slots__ = ("accepted", "fp32_accuracy", "int8_accuracy", "drop", "max_drop", "rows", "split", "reason")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    FP32_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    INT8_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    DROP_FIELD_NUMBER: _ClassVar[int]
    MAX_DROP_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    fp32_accuracy: float
    int8_accuracy: float
    drop: float
    max_drop: float
    rows: int
    split: str
    reason: str
    def __init__(self, accepted: _Optional[bool] = ..., fp32_accuracy: _Optional[float] = ..., int8_accuracy: _Optional[float] = ..., drop: _Optional[float] = ..., max_drop: _Optional[float] = ..., rows: _Optional[int] = ..., split: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class LabelChange(_message.Message):
    __slots__ = ("before", "after", "count", "examples")
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    before: str
    after: str
    count: int
    examples: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, before: _Optional[str] = ..., after: _Optional[str] = ..., count: _Optional[int] = ..., examples: _Optional[_Iterable[str]] = ...) -> None: ...

class ReviewEvidence(_message.Message):
    __slots__ = ("sources", "trusted", "known_samples", "confident_disagreement", "disagreement_by_source", "trigger", "trigger_share", "traffic", "flip_rate", "flip_trigger", "contradictions", "flips", "reasons", "other_holdout", "other_candidate", "other_incumbent", "other_margin", "cluster_share", "cluster_reference_share")
    class SourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class DisagreementBySourceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_FIELD_NUMBER: _ClassVar[int]
    KNOWN_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CONFIDENT_DISAGREEMENT_FIELD_NUMBER: _ClassVar[int]
    DISAGREEMENT_BY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_SHARE_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_FIELD_NUMBER: _ClassVar[int]
    FLIP_RATE_FIELD_NUMBER: _ClassVar[int]
    FLIP_TRIGGER_FIELD_NUMBER: _ClassVar[int]
    CONTRADICTIONS_FIELD_NUMBER: _ClassVar[int]
    FLIPS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    OTHER_HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    OTHER_CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    OTHER_INCUMBENT_FIELD_NUMBER: _ClassVar[int]
    OTHER_MARGIN_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_SHARE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_REFERENCE_SHARE_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.ScalarMap[str, int]
    trusted: bool
    known_samples: int
    confident_disagreement: float
    disagreement_by_source: _containers.ScalarMap[str, float]
    trigger: str
    trigger_share: float
    traffic: int
    flip_rate: float
    flip_trigger: str
    contradictions: _containers.RepeatedCompositeFieldContainer[LabelChange]
    flips: _containers.RepeatedCompositeFieldContainer[LabelChange]
    reasons: _containers.RepeatedScalarFieldContainer[str]
    other_holdout: int
    other_candidate: float
    other_incumbent: float
    other_margin: float
    cluster_share: float
    cluster_reference_share: float
    def __init__(self, sources: _Optional[_Mapping[str, int]] = ..., trusted: _Optional[bool] = ..., known_samples: _Optional[int] = ..., confident_disagreement: _Optional[float] = ..., disagreement_by_source: _Optional[_Mapping[str, float]] = ..., trigger: _Optional[str] = ..., trigger_share: _Optional[float] = ..., traffic: _Optional[int] = ..., flip_rate: _Optional[float] = ..., flip_trigger: _Optional[str] = ..., contradictions: _Optional[_Iterable[_Union[LabelChange, _Mapping]]] = ..., flips: _Optional[_Iterable[_Union[LabelChange, _Mapping]]] = ..., reasons: _Optional[_Iterable[str]] = ..., other_holdout: _Optional[int] = ..., other_candidate: _Optional[float] = ..., other_incumbent: _Optional[float] = ..., other_margin: _Optional[float] = ..., cluster_share: _Optional[float] = ..., cluster_reference_share: _Optional[float] = ...) -> None: ...

class ApproveVersionRequest(_message.Message):
    __slots__ = ("model", "version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class RejectVersionRequest(_message.Message):
    __slots__ = ("model", "version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ListVersionsRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ListVersionsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[Version]
    def __init__(self, versions: _Optional[_Iterable[_Union[Version, _Mapping]]] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("model", "version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GateResult(_message.Message):
    __slots__ = ("candidate_new", "incumbent_new", "candidate_anchor", "incumbent_anchor", "new_examples", "anchor_examples", "promote", "reason", "forgetting", "new_margin", "anchor_margin", "anchor_held_out")
    CANDIDATE_NEW_FIELD_NUMBER: _ClassVar[int]
    INCUMBENT_NEW_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_ANCHOR_FIELD_NUMBER: _ClassVar[int]
    INCUMBENT_ANCHOR_FIELD_NUMBER: _ClassVar[int]
    NEW_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FORGETTING_FIELD_NUMBER: _ClassVar[int]
    NEW_MARGIN_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_MARGIN_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_HELD_OUT_FIELD_NUMBER: _ClassVar[int]
    candidate_new: float
    incumbent_new: float
    candidate_anchor: float
    incumbent_anchor: float
    new_examples: int
    anchor_examples: int
    promote: bool
    reason: str
    forgetting: float
    new_margin: float
    anchor_margin: float
    anchor_held_out: bool
    def __init__(self, candidate_new: _Optional[float] = ..., incumbent_new: _Optional[float] = ..., candidate_anchor: _Optional[float] = ..., incumbent_anchor: _Optional[float] = ..., new_examples: _Optional[int] = ..., anchor_examples: _Optional[int] = ..., promote: _Optional[bool] = ..., reason: _Optional[str] = ..., forgetting: _Optional[float] = ..., new_margin: _Optional[float] = ..., anchor_margin: _Optional[float] = ..., anchor_held_out: _Optional[bool] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "model", "state", "trigger", "reason", "base_version", "samples_upto", "attempt", "created", "started", "finished", "candidate_version", "gate", "error", "data")
    ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_UPTO_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    GATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    model: str
    state: str
    trigger: str
    reason: str
    base_version: int
    samples_upto: int
    attempt: int
    created: float
    started: float
    finished: float
    candidate_version: int
    gate: GateResult
    error: str
    data: TrainingData
    def __init__(self, id: _Optional[str] = ..., model: _Optional[str] = ..., state: _Optional[str] = ..., trigger: _Optional[str] = ..., reason: _Optional[str] = ..., base_version: _Optional[int] = ..., samples_upto: _Optional[int] = ..., attempt: _Optional[int] = ..., created: _Optional[float] = ..., started: _Optional[float] = ..., finished: _Optional[float] = ..., candidate_version: _Optional[int] = ..., gate: _Optional[_Union[GateResult, _Mapping]] = ..., error: _Optional[str] = ..., data: _Optional[_Union[TrainingData, _Mapping]] = ...) -> None: ...

class TrainingData(_message.Message):
    __slots__ = ("sources", "purges_seen")
    class Source(_message.Message):
        __slots__ = ("source", "samples", "first_created", "last_created", "seqs")
        SOURCE_FIELD_NUMBER: _ClassVar[int]
        SAMPLES_FIELD_NUMBER: _ClassVar[int]
        FIRST_CREATED_FIELD_NUMBER: _ClassVar[int]
        LAST_CREATED_FIELD_NUMBER: _ClassVar[int]
        SEQS_FIELD_NUMBER: _ClassVar[int]
        source: str
        samples: int
        first_created: float
        last_created: float
        seqs: _containers.RepeatedCompositeFieldContainer[TrainingData.SeqRange]
        def __init__(self, source: _Optional[str] = ..., samples: _Optional[int] = ..., first_created: _Optional[float] = ..., last_created: _Optional[float] = ..., seqs: _Optional[_Iterable[_Union[TrainingData.SeqRange, _Mapping]]] = ...) -> None: ...
    class SeqRange(_message.Message):
        __slots__ = ("first", "last")
        FIRST_FIELD_NUMBER: _ClassVar[int]
        LAST_FIELD_NUMBER: _ClassVar[int]
        first: int
        last: int
        def __init__(self, first: _Optional[int] = ..., last: _Optional[int] = ...) -> None: ...
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    PURGES_SEEN_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.RepeatedCompositeFieldContainer[TrainingData.Source]
    purges_seen: int
    def __init__(self, sources: _Optional[_Iterable[_Union[TrainingData.Source, _Mapping]]] = ..., purges_seen: _Optional[int] = ...) -> None: ...

class StartFineTuneRequest(_message.Message):
    __slots__ = ("model", "reason")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model: str
    reason: str
    def __init__(self, model: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("model", "job_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    job_id: str
    def __init__(self, model: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class GetModelStatusRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ModelStatus(_message.Message):
    __slots__ = ("model", "serving_version", "samples_since_version", "labels", "job", "last_gate", "needs_adaptation", "backoff_until")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SERVING_VERSION_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_SINCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    LAST_GATE_FIELD_NUMBER: _ClassVar[int]
    NEEDS_ADAPTATION_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_UNTIL_FIELD_NUMBER: _ClassVar[int]
    model: str
    serving_version: int
    samples_since_version: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    job: Job
    last_gate: GateResult
    needs_adaptation: bool
    backoff_until: float
    def __init__(self, model: _Optional[str] = ..., serving_version: _Optional[int] = ..., samples_since_version: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., job: _Optional[_Union[Job, _Mapping]] = ..., last_gate: _Optional[_Union[GateResult, _Mapping]] = ..., needs_adaptation: _Optional[bool] = ..., backoff_until: _Optional[float] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("kind", "model", "time", "message", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    kind: str
    model: str
    time: float
    message: str
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, kind: _Optional[str] = ..., model: _Optional[str] = ..., time: _Optional[float] = ..., message: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetDriftStatusRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class DetectorStatus(_message.Message):
    __slots__ = ("detector", "method", "version", "state", "statistic", "threshold", "drift_detected", "alarm", "alarm_since", "samples_seen", "reference_source", "reference_size", "calibration_seconds", "message", "effect", "min_effect", "budgeted")
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DRIFT_DETECTED_FIELD_NUMBER: _ClassVar[int]
    ALARM_FIELD_NUMBER: _ClassVar[int]
    ALARM_SINCE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_SEEN_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    MIN_EFFECT_FIELD_NUMBER: _ClassVar[int]
    BUDGETED_FIELD_NUMBER: _ClassVar[int]
    detector: str
    method: str
    version: int
    state: str
    statistic: float
    threshold: float
    drift_detected: bool
    alarm: bool
    alarm_since: float
    samples_seen: int
    reference_source: str
    reference_size: int
    calibration_seconds: float
    message: str
    effect: float
    min_effect: float
    budgeted: bool
    def __init__(self, detector: _Optional[str] = ..., method: _Optional[str] = ..., version: _Optional[int] = ..., state: _Optional[str] = ..., statistic: _Optional[float] = ..., threshold: _Optional[float] = ..., drift_detected: _Optional[bool] = ..., alarm: _Optional[bool] = ..., alarm_since: _Optional[float] = ..., samples_seen: _Optional[int] = ..., reference_source: _Optional[str] = ..., reference_size: _Optional[int] = ..., calibration_seconds: _Optional[float] = ..., message: _Optional[str] = ..., effect: _Optional[float] = ..., min_effect: _Optional[float] = ..., budgeted: _Optional[bool] = ...) -> None: ...

class DriftStatus(_message.Message):
    __slots__ = ("model", "version", "enabled", "alarm", "detectors", "samples_dropped", "estimated_accuracy", "false_alarm_every_hours", "traffic_rate")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    ALARM_FIELD_NUMBER: _ClassVar[int]
    DETECTORS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_DROPPED_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    FALSE_ALARM_EVERY_HOURS_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_RATE_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    enabled: bool
    alarm: bool
    detectors: _containers.RepeatedCompositeFieldContainer[DetectorStatus]
    samples_dropped: int
    estimated_accuracy: float
    false_alarm_every_hours: float
    traffic_rate: float
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., enabled: _Optional[bool] = ..., alarm: _Optional[bool] = ..., detectors: _Optional[_Iterable[_Union[DetectorStatus, _Mapping]]] = ..., samples_dropped: _Optional[int] = ..., estimated_accuracy: _Optional[float] = ..., false_alarm_every_hours: _Optional[float] = ..., traffic_rate: _Optional[float] = ...) -> None: ...

class GetLabelingCandidatesRequest(_message.Message):
    __slots__ = ("model", "count")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    model: str
    count: int
    def __init__(self, model: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class LabelingCandidate(_message.Message):
    __slots__ = ("prediction_id", "text", "version", "predicted_label", "confidence", "atypicality", "score", "content")
    PREDICTION_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_LABEL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    ATYPICALITY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    prediction_id: str
    text: str
    version: int
    predicted_label: str
    confidence: float
    atypicality: float
    score: float
    content: bytes
    def __init__(self, prediction_id: _Optional[str] = ..., text: _Optional[str] = ..., version: _Optional[int] = ..., predicted_label: _Optional[str] = ..., confidence: _Optional[float] = ..., atypicality: _Optional[float] = ..., score: _Optional[float] = ..., content: _Optional[bytes] = ...) -> None: ...

class GetLabelingCandidatesResponse(_message.Message):
    __slots__ = ("candidates",)
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[LabelingCandidate]
    def __init__(self, candidates: _Optional[_Iterable[_Union[LabelingCandidate, _Mapping]]] = ...) -> None: ...
