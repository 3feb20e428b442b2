"""Drift monitoring: detectors over served embeddings and outputs, run off the serving path.

Public surface:

- :class:`Detector`: the contract every detector keeps (``fit``, ``update``, ``statistic``,
  ``threshold``, ``drift_detected``, ``samples_seen``);
- the alibi-detect adapters :class:`EmbeddingDetector` (online MMD/LSDD on PCA-reduced
  embeddings), :class:`ConfidenceDetector` (KS on confidence) and :class:`LabelDetector`
  (Chi-square on predicted labels), built from a model's ``[drift]`` table by
  :func:`build_detectors`;
- :class:`DriftMonitor`: the bounded queue, the worker process, statuses, metrics, alarms and
  labeling candidates of a running server.
"""

from service.drift._candidates import CandidatePool
from service.drift._contract import Detector
from service.drift._detectors import (
    ConfidenceDetector,
    EmbeddingDetector,
    LabelDetector,
    build_detectors,
)
from service.drift._monitor import AlarmHook, DriftMonitor
from service.drift._reduce import Projection
from service.drift._reference import training_texts
from service.drift._types import (
    Candidate,
    DetectorState,
    DetectorStatus,
    DriftStatus,
    Observations,
)

__all__ = [
    "AlarmHook",
    "Candidate",
    "CandidatePool",
    "ConfidenceDetector",
    "Detector",
    "DetectorState",
    "DetectorStatus",
    "DriftMonitor",
    "DriftStatus",
    "EmbeddingDetector",
    "LabelDetector",
    "Observations",
    "Projection",
    "build_detectors",
    "training_texts",
]
