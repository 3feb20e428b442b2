"""Recent predictions by request id, so labels that arrive later can be scored (delayed labels).

A single-text ModelInfer request is recorded under its request id; the i-th text of a request
with several texts under ``<id>/<i>``. Requests without an id are not recorded. Bounded: the
oldest entries go first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class PredictionRecord:
    model: str
    version: int
    label: str
    confidence: float


class PredictionLog:
    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = capacity
        self._records: OrderedDict[str, PredictionRecord] = OrderedDict()
        self._lock = threading.Lock()

    def record(
        self, request_id: str, model: str, version: int, labels: list[str], confidences: list[float]
    ) -> None:
        if not request_id:
            return
        keys = (
            [request_id] if len(labels) == 1 else [f"{request_id}/{i}" for i in range(len(labels))]
        )
        with self._lock:
            for key, label, confidence in zip(keys, labels, confidences, strict=True):
                self._records[key] = PredictionRecord(model, version, label, confidence)
                self._records.move_to_end(key)
            while len(self._records) > self._capacity:
                self._records.popitem(last=False)

    def lookup(self, prediction_id: str) -> PredictionRecord | None:
        with self._lock:
            return self._records.get(prediction_id)

    def __len__(self) -> int:
        return len(self._records)
