"""Drift monitoring: detectors over served embeddings and outputs, run off the serving path.

Public surface:

- :class:`Detector`: the contract every detector keeps (``fit``, ``update``, ``statistic``,
  ``threshold``, ``drift_detected``, ``samples_seen``);
- the alibi-detect adapters :class:`EmbeddingKSDetector` (KS on PCA-reduced embeddings),
  :class:`ConfidenceDetector` (KS on confidence) and :class:`LabelDetector` (Chi-square on
  predicted labels), which test windows and report :class:`WindowTest` p-values and effect
  sizes, and :class:`EmbeddingDetector` (online MMD/LSDD, a diagnostic), built from a model's
  ``[drift]`` table by :func:`build_detectors`;
- :class:`DriftMonitor`: the bounded queue, the worker process, statuses, metrics, the
  model-level alarm under its false-alarm budget, estimated accuracy and labeling candidates of
  a running server.
"""

from service.drift._candidates import CandidatePool
from service.drift._contract import Detector
from service.drift._detectors import (
    ConfidenceDetector,
    EmbeddingDetector,
    EmbeddingKSDetector,
    LabelDetector,
    build_detectors,
)
from service.drift._monitor import AlarmHook, DriftMonitor
from service.drift._reduce import Projection
from service.drift._reference import training_texts
from service.drift._served import MonitoredModel
from service.drift._types import (
    Candidate,
    DetectorState,
    DetectorStatus,
    DriftStatus,
    Observations,
    WindowTest,
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
    "EmbeddingKSDetector",
    "LabelDetector",
    "MonitoredModel",
    "Observations",
    "Projection",
    "WindowTest",
    "build_detectors",
    "training_texts",
]
