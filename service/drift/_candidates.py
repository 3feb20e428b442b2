"""Recent inputs kept for active learning: which ones are worth asking a human to label."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from service.drift._reduce import Projection
from service.drift._types import Candidate, FloatArray


@dataclass(frozen=True)
class _Entry:
    prediction_id: str
    text: str
    version: int
    predicted_label: str
    confidence: float
    embedding: FloatArray


class CandidatePool:
    """The last ``capacity`` served texts; ranks them by low confidence and atypical embedding.

    Prediction ids follow the delayed-label convention: the request id for a one-text request,
    ``<id>/<i>`` for the i-th text of a longer one, empty when the request had no id.
    """

    def __init__(self, capacity: int) -> None:
        self._entries: deque[_Entry] = deque(maxlen=capacity)
        self._projections: dict[int, Projection] = {}
        self._lock = threading.Lock()

    def add(
        self,
        request_id: str,
        texts: Sequence[str],
        version: int,
        labels: list[str],
        probabilities: FloatArray,
        embeddings: FloatArray,
    ) -> None:
        winners = probabilities.argmax(axis=1)
        entries = [
            _Entry(
                _prediction_id(request_id, i, len(texts)),
                text,
                version,
                labels[int(winners[i])],
                float(probabilities[i, winners[i]]),
                embeddings[i],
            )
            for i, text in enumerate(texts)
            if text  # an input the task could not keep (see InputContract.payloads)
        ]
        with self._lock:
            self._entries.extend(entries)

    def set_projection(self, version: int, projection: Projection) -> None:
        with self._lock:
            self._projections[version] = projection

    def forget(self, prediction_ids: set[str]) -> None:
        """Drop inputs that have been labeled meanwhile."""
        if not prediction_ids:
            return
        with self._lock:
            kept = [e for e in self._entries if e.prediction_id not in prediction_ids]
            self._entries.clear()
            self._entries.extend(kept)

    def top(self, n: int) -> list[Candidate]:
        """Up to ``n`` distinct texts, best first. The score averages two percentile ranks: low
        confidence and atypicality (distance from the drift reference, when it is known)."""
        with self._lock:
            entries = list(self._entries)
            projections = dict(self._projections)
        unique: dict[str, _Entry] = {}
        for entry in reversed(entries):  # newest first: keep the latest prediction of a text
            unique.setdefault(entry.text, entry)
        chosen = list(unique.values())
        if not chosen or n <= 0:
            return []
        confidence = np.array([e.confidence for e in chosen], dtype=np.float64)
        atypicality = np.full(len(chosen), np.nan)
        for version, projection in projections.items():
            rows = [i for i, e in enumerate(chosen) if e.version == version]
            if rows:
                atypicality[rows] = projection.atypicality(
                    np.stack([chosen[i].embedding for i in rows])
                )
        score = _rank(-confidence)
        known = ~np.isnan(atypicality)
        if known.any():
            score = np.where(
                known, (score + _rank(np.nan_to_num(atypicality, nan=-1.0))) / 2, score
            )
        order = np.argsort(-score, kind="stable")[:n]
        return [
            Candidate(
                prediction_id=chosen[i].prediction_id,
                text=chosen[i].text,
                version=chosen[i].version,
                predicted_label=chosen[i].predicted_label,
                confidence=chosen[i].confidence,
                atypicality=float(atypicality[i]),
                score=float(score[i]),
            )
            for i in order
        ]

    def recent(self, n: int) -> list[str]:
        """Up to ``n`` distinct texts, newest first: what production sends now, for a job to
        compare a candidate with the serving version on (see service.domain.review)."""
        with self._lock:
            texts = [e.text for e in self._entries]
        return list(dict.fromkeys(reversed(texts)))[: max(n, 0)]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _rank(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Percentile rank in [0, 1]; tied values share their average rank."""
    if len(values) == 1:
        return np.ones(1)
    ranks = np.empty(len(values))
    ranks[values.argsort(kind="stable")] = np.arange(len(values))
    _, groups, sizes = np.unique(values, return_inverse=True, return_counts=True)
    ranks = np.bincount(groups, weights=ranks)[groups] / sizes[groups]
    return np.asarray(ranks / (len(values) - 1), dtype=np.float64)


def _prediction_id(request_id: str, index: int, count: int) -> str:
    if not request_id:
        return ""
    return request_id if count == 1 else f"{request_id}/{index}"
