"""Drift monitoring: detectors over served embeddings and outputs, run off the serving path.

Public surface:

- :class:`Detector`: the contract every detector keeps (``fit``, ``update``, ``statistic``,
  ``threshold``, ``drift_detected``, ``samples_seen``);
- the detectors :class:`EmbeddingKSDetector` (KS on PCA-reduced embeddings),
  :class:`ConfidenceDetector` (KS on confidence) and :class:`LabelDetector` (Chi-square on
  predicted labels), which test windows and report :class:`WindowTest` p-values and effect
  sizes (alibi-detect's statistics, on scipy), and :class:`EmbeddingDetector` (online MMD/LSDD
  through alibi-detect, a diagnostic), built from a model's
  ``[drift]`` table by :func:`build_detectors`;
- :class:`DriftMonitor`: the bounded queue, the worker process, statuses, metrics, the
  model-level alarm under its false-alarm budget, estimated accuracy and labeling candidates of
  a running server.

The serving side (the monitor, the candidate pool, the reference texts) is imported on first use:
the worker process imports this package too, and must not load what only a server needs (ONNX
Runtime, the stores, Prometheus).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from service.drift._contract import Detector
from service.drift._detectors import (
    ConfidenceDetector,
    EmbeddingDetector,
    EmbeddingKSDetector,
    LabelDetector,
    build_detectors,
)
from service.drift._reduce import Projection
from service.drift._types import (
    Candidate,
    DetectorState,
    DetectorStatus,
    DriftStatus,
    Observations,
    WindowTest,
)

if TYPE_CHECKING:
    from service.drift._candidates import CandidatePool
    from service.drift._monitor import AlarmHook, DriftMonitor
    from service.drift._reference import training_texts
    from service.drift._served import MonitoredModel

_SERVING_SIDE = {
    "AlarmHook": "service.drift._monitor",
    "CandidatePool": "service.drift._candidates",
    "DriftMonitor": "service.drift._monitor",
    "MonitoredModel": "service.drift._served",
    "training_texts": "service.drift._reference",
}


def __getattr__(name: str) -> Any:
    module = _SERVING_SIDE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
