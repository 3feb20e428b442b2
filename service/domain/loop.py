"""Types of the closed loop shared by the core, the store and the api: samples, jobs, events."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from typing import Any

from service.domain.int8 import Int8Check
from service.domain.provenance import TrainingData
from service.domain.review import ReviewEvidence
from service.errors import MAX_IDENTIFIER_CHARS

# Limits on what a caller posts; longer values are refused with InvalidInput before anything is
# stored or echoed.
MAX_SAMPLES_PER_CALL = 1000
# The content bytes of one call's samples together: what one gRPC message carries at most.
MAX_CONTENT_BYTES_PER_CALL = 4 * 1024 * 1024
MAX_LABEL_CHARS = MAX_IDENTIFIER_CHARS
MAX_SAMPLE_ID_CHARS = MAX_IDENTIFIER_CHARS
# A prediction id is a ModelInfer request id, or ``<request id>/<i>`` for its i-th text.
MAX_PREDICTION_ID_CHARS = MAX_IDENTIFIER_CHARS + 16
MAX_REASON_CHARS = 500
# The server's pid, passed to a fine-tune job process so that it can die with its server.
JOB_PARENT_PID_ENV = "LOOPSERVE_JOB_PARENT_PID"
# The error of a job an operator ended, followed by the operator's token name. Stored before its
# process ends, so that a restart or another process sees the job as cancelled: never retried.
# On a job that still runs it is a request that the process running the job acts on.
CANCELLED_BY = "cancelled by "


@dataclass(frozen=True)
class NewSample:
    """A labeled sample as a caller posts it: a text, or the bytes of a binary input (an
    encoded image) in ``data`` with an empty text. A stored sample's ``text`` holds the
    content key of its bytes (:func:`content_key`); the store keeps the bytes once per model."""

    text: str
    label: str
    id: str = ""  # caller's id; idempotency key. Empty: the store assigns one.
    prediction_id: str = ""  # the ModelInfer request id this label is for, if any
    source: str = ""  # who posted it: the name of the caller's token (set by the server)
    data: bytes = b""


CONTENT_KEY_PREFIX = "sha256:"


def content_key(data: bytes) -> str:
    """The key a sample's content is stored under, once per model: ``sha256:<64 hex>``."""
    return CONTENT_KEY_PREFIX + hashlib.sha256(data).hexdigest()


def derived_sample_id(key: str, label: str) -> str:
    """A sample id from a content key and a label, within the id length limit whatever the
    label: the key's hex, then a hash of the label."""
    label_hash = hashlib.sha256(label.encode()).hexdigest()[:16]
    return f"{key.removeprefix(CONTENT_KEY_PREFIX)}-{label_hash}"


@dataclass(frozen=True)
class Sample:
    """A stored sample. ``seq`` orders samples of a model; versions record the last seq they saw."""

    model: str
    id: str
    text: str
    label: str
    prediction_id: str
    created: float
    seq: int
    source: str = ""  # the name of the token that posted it ("anonymous" without auth)


@dataclass(frozen=True)
class AddOutcome:
    accepted: int
    duplicates: int
    ids: list[str]  # per posted sample, in order: the id it is stored under


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PROMOTED = "promoted"
    REJECTED = "rejected"
    FAILED = "failed"
    PENDING = "pending"  # its candidate passed the gate and waits for an operator's review

    @property
    def finished(self) -> bool:
        return self in (JobState.PROMOTED, JobState.REJECTED, JobState.FAILED, JobState.PENDING)


@dataclass(frozen=True)
class GateResult:
    """Candidate vs incumbent on new-data holdout and old-data anchor; the promotion decision."""

    candidate_new: float
    incumbent_new: float
    candidate_anchor: float
    incumbent_anchor: float
    new_examples: int
    anchor_examples: int
    promote: bool
    reason: str
    # Standard-error allowances the drops had to exceed (see GateThresholds.confidence_z).
    new_margin: float = 0.0
    anchor_margin: float = 0.0
    anchor_held_out: bool = False  # the anchor came from the evaluation reserve

    @property
    def forgetting(self) -> float:
        return self.incumbent_anchor - self.candidate_anchor


@dataclass(frozen=True)
class Job:
    id: str
    model: str
    state: JobState
    trigger: str  # "samples", "drift", "manual", "retry"
    reason: str
    base_version: int
    samples_upto: int  # highest sample seq the job trains on
    created: float
    started: float | None = None
    finished: float | None = None
    candidate_version: int | None = None
    gate: GateResult | None = None
    error: str = ""
    attempt: int = 1
    # The samples it trained and gated on, recorded once it has read them (None before).
    data: TrainingData | None = None

    @property
    def cancelled(self) -> bool:
        """An operator ended it, or asked to (see CANCELLED_BY)."""
        return self.error.startswith(CANCELLED_BY)

    @property
    def cancel_requested(self) -> bool:
        """An operator's cancellation is stored and the job still runs: the process that runs
        it ends it, at once when the request reached that process, else at its next poll."""
        return self.cancelled and not self.state.finished


class EventKind(enum.StrEnum):
    SAMPLES_ACCEPTED = "samples_accepted"
    JOB_STARTED = "job_started"
    JOB_FINISHED = "job_finished"
    CANDIDATE_PROMOTED = "candidate_promoted"
    CANDIDATE_REJECTED = "candidate_rejected"
    CANDIDATE_PENDING = "candidate_pending"  # passed the gate; waits for an operator's review
    SWAP = "swap"
    ROLLBACK = "rollback"
    DRIFT_ALARM_RAISED = "drift_alarm_raised"  # the model-level alarm
    DRIFT_ALARM_CLEARED = "drift_alarm_cleared"
    SAMPLES_PURGED = "samples_purged"
    DRIFT_SIGNAL_RAISED = "drift_signal_raised"  # one detector's own alarm (diagnostic)
    DRIFT_SIGNAL_CLEARED = "drift_signal_cleared"


@dataclass(frozen=True)
class Event:
    kind: EventKind
    model: str
    time: float
    message: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VersionSummary:
    model: str
    version: int
    parent: int | None
    created: str
    status: str  # "serving", "promoted", "rejected", "retired", "pending"
    reason: str
    samples_upto: int
    metrics: dict[str, Any]
    review: ReviewEvidence | None = None  # what a pending (or reviewed) version was judged on
    serving_file: str = "model.onnx"  # "model.int8.onnx" when it serves int8
    int8: Int8Check | None = None  # its int8 check; None when int8 was off


@dataclass(frozen=True)
class ModelStatus:
    model: str
    serving_version: int
    samples_since_version: int
    labels: list[str]
    job: Job | None  # the running job, else the latest one
    last_gate: GateResult | None
    needs_adaptation: bool  # a drift alarm (or operator) asked for adaptation
    backoff_until: float | None


@dataclass(frozen=True)
class SourceSummary:
    """The stored samples of one source (the token name that posted them) for one model."""

    source: str
    samples: int
    first_created: float
    last_created: float
    first_seq: int
    last_seq: int


@dataclass(frozen=True)
class PurgeOutcome:
    """What ``loopserve samples purge`` removed, and what the source's samples (posted since
    the purge's ``since``) went into, from the records jobs and versions keep of their data: the
    same answer when the purge is repeated and removes nothing."""

    model: str
    source: str
    removed: int
    first_seq: int  # 0 when nothing was removed
    last_seq: int
    versions: list[int] = field(default_factory=list)  # every status, pending included
    # Jobs whose data included them and that made no version: the queued or running jobs this
    # purge stops (or stopped) and jobs that failed; newest first.
    jobs: list[Job] = field(default_factory=list)
