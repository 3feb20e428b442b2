"""Online accuracy from delayed labels: a label posted for a served prediction scores it."""

from __future__ import annotations

import threading

from service.adaptation.predictions import PredictionLog
from service.domain.loop import NewSample
from service.metrics import Metrics


class OnlineAccuracy:
    """Per (model, version): predictions that later got a label, and how many were right.

    Predictions are remembered by the process that served them, so on a scaled-out deployment a
    label scores its prediction only when it is posted to the replica that served it.
    """

    def __init__(self, predictions: PredictionLog, metrics: Metrics) -> None:
        self._predictions = predictions
        self._metrics = metrics
        self._counts: dict[tuple[str, str], tuple[int, int]] = {}
        self._lock = threading.Lock()

    def score(self, model: str, samples: list[NewSample]) -> None:
        for sample in samples:
            if not sample.prediction_id:
                continue
            record = self._predictions.lookup(sample.prediction_id)
            if record is None or record.model != model:
                continue
            self._count(model, str(record.version), record.label == sample.label)

    def _count(self, model: str, version: str, correct: bool) -> None:
        with self._lock:
            labeled, right = self._counts.get((model, version), (0, 0))
            counts = (labeled + 1, right + int(correct))
            self._counts[(model, version)] = counts
        self._metrics.online_labeled.labels(model, version).inc()
        if correct:
            self._metrics.online_correct.labels(model, version).inc()
        self._metrics.online_accuracy.labels(model, version).set(counts[1] / counts[0])
