"""Recent inputs kept for active learning: which ones are worth asking a human to label.

An input is kept as its task handed it over (service.tasks InputContract.payloads): a text, or
the encoded bytes of a binary input such as an image. The pool is bounded twice, by entries and
by bytes (payloads and embeddings), oldest first out; equal binary payloads are held once.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from service.domain.loop import content_key
from service.drift._reduce import Projection
from service.drift._types import Candidate, FloatArray

Payload = str | bytes
# What an entry costs besides its payload and embedding (the entry object, deque slot, ids).
ENTRY_OVERHEAD = 256
# Inputs labeled lately, kept aside so that an undone label puts its input back in the queue.
UNDO_DEPTH = 64


@dataclass(frozen=True)
class _Entry:
    prediction_id: str
    key: str  # the text itself, or the content key of a binary payload (as the store has it)
    binary: bool
    version: int
    predicted_label: str
    confidence: float
    embedding: FloatArray
    size: int  # bytes accounted for this entry, its binary payload excepted (held once)


class CandidatePool:
    """The last ``capacity`` served inputs within ``max_bytes``; ranks them by low confidence and
    atypical embedding.

    Prediction ids follow the delayed-label convention: the request id for a one-input request,
    ``<id>/<i>`` for the i-th input of a longer one, empty when the request had no id.
    """

    def __init__(self, capacity: int, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._entries: deque[_Entry] = deque()
        self._contents: dict[str, tuple[bytes, int]] = {}  # key -> (payload, entries holding it)
        self._bytes = 0
        self._projections: dict[int, Projection] = {}
        # Newest last; within an eighth of the budget besides the pool's own.
        self._labeled: deque[tuple[_Entry, bytes]] = deque()
        self._labeled_bytes = 0
        self._lock = threading.Lock()

    def add(
        self,
        request_id: str,
        payloads: Sequence[Payload],
        version: int,
        labels: list[str],
        probabilities: FloatArray,
        embeddings: FloatArray,
    ) -> None:
        winners = probabilities.argmax(axis=1)
        added: list[tuple[_Entry, bytes]] = []
        for i, payload in enumerate(payloads):
            if not payload:  # an input the task could not keep (see InputContract.payloads)
                continue
            binary = isinstance(payload, bytes)
            key = content_key(payload) if isinstance(payload, bytes) else payload
            own = 0 if binary else len(key.encode())
            entry = _Entry(
                _prediction_id(request_id, i, len(payloads)), key, binary, version,
                labels[int(winners[i])], float(probabilities[i, winners[i]]),
                embeddings[i].copy(),  # not a view: the batch's array must not stay alive
                own + embeddings[i].nbytes + ENTRY_OVERHEAD,
            )  # fmt: skip
            added.append((entry, payload if isinstance(payload, bytes) else b""))
        with self._lock:
            for entry, content in added:
                self._append(entry, content)

    def _append(self, entry: _Entry, content: bytes) -> None:
        cost = entry.size + (len(content) if entry.key not in self._contents else 0)
        if cost > self._max_bytes:
            return  # larger than the whole budget: never kept
        self._entries.append(entry)
        self._bytes += entry.size
        if entry.binary:
            held, count = self._contents.get(entry.key, (content, 0))
            if count == 0:
                self._bytes += len(held)
            self._contents[entry.key] = (held, count + 1)
        while len(self._entries) > self._capacity or self._bytes > self._max_bytes:
            self._drop(self._entries.popleft())

    def _drop(self, entry: _Entry) -> None:
        self._bytes -= entry.size
        if entry.binary:
            held, count = self._contents[entry.key]
            if count == 1:
                del self._contents[entry.key]
                self._bytes -= len(held)
            else:
                self._contents[entry.key] = (held, count - 1)

    def set_projection(self, version: int, projection: Projection) -> None:
        with self._lock:
            self._projections[version] = projection

    def forget(self, prediction_ids: set[str]) -> None:
        """Drop inputs that have been labeled meanwhile (every time they were served); the last
        few stay aside for ``restore``."""
        if not prediction_ids:
            return
        with self._lock:
            labeled = {e.key for e in self._entries if e.prediction_id in prediction_ids}
            kept: deque[_Entry] = deque()
            for entry in self._entries:
                if entry.key in labeled:
                    self._set_aside(entry)
                    self._drop(entry)
                else:
                    kept.append(entry)
            self._entries = kept

    def restore(self, prediction_ids: set[str]) -> int:
        """Put inputs back whose labels were undone (every time they were served, if they were
        labeled lately); how many entries came back."""
        with self._lock:
            keys = {e.key for e, _ in self._labeled if e.prediction_id in prediction_ids}
            back = [(e, c) for e, c in self._labeled if e.key in keys]
            self._labeled = deque((e, c) for e, c in self._labeled if e.key not in keys)
            self._labeled_bytes -= sum(e.size + len(c) for e, c in back)
            for entry, content in back:
                self._append(entry, content)
            return len(back)

    def _set_aside(self, entry: _Entry) -> None:
        content = self._contents[entry.key][0] if entry.binary else b""
        self._labeled.append((entry, content))
        self._labeled_bytes += entry.size + len(content)
        while len(self._labeled) > UNDO_DEPTH or self._labeled_bytes > self._max_bytes // 8:
            old, held = self._labeled.popleft()
            self._labeled_bytes -= old.size + len(held)

    def top(self, n: int, max_content_bytes: int | None = None) -> list[Candidate]:
        """Up to ``n`` distinct inputs, best first. The score averages two percentile ranks: low
        confidence and atypicality (distance from the drift reference, when it is known).
        ``max_content_bytes`` bounds the binary payloads given out together: the best that fit,
        so that the answer fits one message; an input larger than that alone is passed over."""
        with self._lock:
            entries = list(self._entries)
            projections = dict(self._projections)
        unique: dict[str, _Entry] = {}
        for entry in reversed(entries):  # newest first: keep the latest prediction of an input
            unique.setdefault(entry.key, entry)
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
        ranked = [int(i) for i in np.argsort(-score, kind="stable")]
        binary = [chosen[i].key for i in ranked if chosen[i].binary]
        contents = _within(self.contents(binary), binary, max_content_bytes)
        order = [i for i in ranked if not chosen[i].binary or chosen[i].key in contents][:n]
        return [
            Candidate(
                prediction_id=chosen[i].prediction_id,
                text="" if chosen[i].binary else chosen[i].key,
                version=chosen[i].version,
                predicted_label=chosen[i].predicted_label,
                confidence=chosen[i].confidence,
                atypicality=float(atypicality[i]),
                score=float(score[i]),
                content=contents.get(chosen[i].key, b""),
            )
            for i in order
        ]

    def recent(self, n: int) -> list[Payload]:
        """Up to ``n`` distinct inputs, newest first, as served (texts, or the bytes of binary
        inputs): what production sends now, for a job to compare a candidate with the serving
        version on (see service.domain.review)."""
        with self._lock:
            keys = list(dict.fromkeys(e.key for e in reversed(self._entries)))[: max(n, 0)]
            return [self._contents[k][0] if k in self._contents else k for k in keys]

    def contents(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The bytes of those binary inputs among ``keys`` that the pool still holds."""
        with self._lock:
            return {k: self._contents[k][0] for k in keys if k in self._contents}

    @property
    def size_bytes(self) -> int:
        """Bytes the pool accounts for: payloads (each binary one once), embeddings, overhead."""
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _within(contents: dict[str, bytes], keys: list[str], limit: int | None) -> dict[str, bytes]:
    """The contents of ``keys``, in order, that fit in ``limit`` bytes together."""
    if limit is None:
        return contents
    kept: dict[str, bytes] = {}
    total = 0
    for key in keys:
        data = contents.get(key)
        if data is not None and total + len(data) <= limit:
            kept[key] = data
            total += len(data)
    return kept


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
