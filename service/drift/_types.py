"""Values the drift package passes around: observations, detector states and statuses, candidates."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


class DetectorState(enum.StrEnum):
    CALIBRATING = "calibrating"  # collecting or embedding the reference, or configuring thresholds
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class Observations:
    """What one or more served predictions left behind: pooled embeddings and class probabilities."""

    embeddings: FloatArray  # (n, embedding_dim)
    probabilities: FloatArray  # (n, labels)

    def __post_init__(self) -> None:
        if self.embeddings.ndim != 2 or self.probabilities.ndim != 2:
            raise ValueError("observations must be 2-D: (n, dim) embeddings, (n, k) probabilities")
        if len(self.embeddings) != len(self.probabilities):
            raise ValueError("embeddings and probabilities must have the same number of rows")

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def confidence(self) -> FloatArray:
        return np.asarray(self.probabilities.max(axis=1), dtype=np.float32)

    @property
    def predicted(self) -> npt.NDArray[np.int64]:
        return np.asarray(self.probabilities.argmax(axis=1), dtype=np.int64)

    @staticmethod
    def concat(parts: list[Observations]) -> Observations:
        return Observations(
            np.concatenate([p.embeddings for p in parts]),
            np.concatenate([p.probabilities for p in parts]),
        )


@dataclass(frozen=True)
class WindowTest:
    """One window of a windowed detector: its p-value against the reference and the effect size."""

    p_value: float
    effect: float
    size: int


@dataclass(frozen=True)
class DetectorStatus:
    """One detector of one model, as operators see it (GetDriftStatus, metrics)."""

    model: str
    detector: str  # embedding, confidence, labels
    method: str  # mmd, lsdd, ks, chisquare
    version: int
    state: DetectorState
    statistic: float = math.nan
    threshold: float = math.nan
    drift_detected: bool = False
    alarm: bool = False
    alarm_since: float | None = None
    samples_seen: int = 0
    reference_source: str = ""
    reference_size: int = 0
    calibration_seconds: float | None = None
    message: str = ""
    effect: float = math.nan  # effect size of the latest window (NaN: none, or online)
    min_effect: float = 0.0  # a window with a smaller effect never counts as drift
    budgeted: bool = True  # counts towards the model-level alarm


@dataclass(frozen=True)
class DriftStatus:
    model: str
    version: int
    alarm: bool  # the model-level alarm: any budgeted detector's alarm
    detectors: list[DetectorStatus] = field(default_factory=list)
    samples_dropped: int = 0
    enabled: bool = True
    estimated_accuracy: float = math.nan  # over recent requests, from calibrated confidence
    false_alarm_every_hours: float = math.nan
    traffic_rate: float = math.nan  # samples per second the budget was last computed with


@dataclass(frozen=True)
class Candidate:
    """A recent input worth labeling: low confidence, atypical embedding, or both."""

    prediction_id: str
    text: str  # empty for a binary input
    version: int
    predicted_label: str
    confidence: float
    atypicality: float  # squared whitened distance from the reference in PCA space (NaN: unknown)
    score: float  # in [0, 1], higher is more worth labeling
    content: bytes = b""  # a binary input's bytes as served (an encoded image); empty for text
