"""Recent predictions by request id, so labels that arrive later can be scored (delayed labels).

A single-text ModelInfer request is recorded under its request id; the i-th text of a request
with several texts under ``<id>/<i>``. Requests without an id are not recorded.

Only what online accuracy needs is kept, in fixed-size arrays allocated once: per entry a 64-bit
hash of the id, the model, the version, the predicted label (as indexes into small tables of the
model names and labels seen) and when it was recorded, in a ring of ``capacity`` entries, plus an
open-addressing index of the ring positions. The oldest entries go first, and an entry older than
``retention_seconds`` is no longer found. Memory is therefore fixed by ``capacity``, whatever the
ids or their number: about 35 bytes per entry at the default 100,000 (3.5 MB), measured with
tracemalloc, against about 340 bytes per entry (34 MB) when each id was kept as a string key with
a record object. Two ids with the same 64-bit hash are confused; among 100,000 entries that
happens with a probability of about 3e-10.
"""

from __future__ import annotations

import hashlib
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_CAPACITY = 100_000
DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600.0
_EMPTY = -1


@dataclass(frozen=True)
class PredictionRecord:
    model: str
    version: int
    label: str


class _Names:
    """Strings interned as small integers (model names, labels): few, and never forgotten."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self.names: list[str] = []

    def intern(self, name: str) -> int:
        index = self._index.get(name)
        if index is None:
            index = self._index[name] = len(self.names)
            self.names.append(name)
        return index


class PredictionLog:
    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._retention = retention_seconds
        self._clock = clock
        self._epoch = clock()
        # The ring: entry i of each array describes one prediction.
        self._keys = array("Q", bytes(8 * capacity))
        self._models = array("H", bytes(2 * capacity))
        self._versions = array("I", bytes(4 * capacity))
        self._labels = array("I", bytes(4 * capacity))
        self._seconds = array("I", bytes(4 * capacity))  # since the log was made
        self._used = array("b", bytes(capacity))  # 0: free, or dropped when its id came again
        self._next = 0  # the ring position written next, which holds the oldest entry
        self._live = 0
        # Linear-probing index from a key's hash to its ring position; at most half full.
        self._mask = (1 << max(1, (2 * capacity - 1).bit_length())) - 1
        self._table = array("i", [_EMPTY]) * (self._mask + 1)
        self._model_names = _Names()
        self._label_names = _Names()
        self._lock = threading.Lock()

    def record(self, request_id: str, model: str, version: int, labels: list[str]) -> None:
        """Remember the predicted ``labels`` (one per text) of ``request_id``, served by
        ``model`` ``version``."""
        if not request_id:
            return
        keys = (
            [request_id] if len(labels) == 1 else [f"{request_id}/{i}" for i in range(len(labels))]
        )
        hashes = [_hash(key) for key in keys]
        now = self._seconds_now()
        with self._lock:
            model_index = self._model_names.intern(model)
            for key, label in zip(hashes, labels, strict=True):
                self._put(key, model_index, version, self._label_names.intern(label), now)

    def lookup(self, prediction_id: str) -> PredictionRecord | None:
        key = _hash(prediction_id)
        oldest = self._seconds_now() - self._retention
        with self._lock:
            slot = self._find(key)
            if slot == _EMPTY:
                return None
            position = self._table[slot]
            if self._seconds[position] < oldest:
                return None
            return PredictionRecord(
                self._model_names.names[self._models[position]],
                self._versions[position],
                self._label_names.names[self._labels[position]],
            )

    def __len__(self) -> int:
        return self._live

    def _seconds_now(self) -> int:
        return int(self._clock() - self._epoch)

    def _put(self, key: int, model: int, version: int, label: int, now: int) -> None:
        """Store one entry at the ring's next position (under the lock)."""
        previous = self._find(key)
        if previous != _EMPTY:  # the same id again: its newer prediction replaces the older
            self._used[self._table[previous]] = 0
            self._live -= 1
            self._remove(previous)
        position = self._next
        if self._used[position]:
            self._remove(self._find(self._keys[position]))
            self._live -= 1
        self._keys[position] = key
        self._models[position] = model
        self._versions[position] = version
        self._labels[position] = label
        self._seconds[position] = now
        self._used[position] = 1
        self._live += 1
        self._next = (position + 1) % self._capacity
        slot = key & self._mask
        while self._table[slot] != _EMPTY:
            slot = (slot + 1) & self._mask
        self._table[slot] = position

    def _find(self, key: int) -> int:
        """The index slot that holds ``key``'s ring position, or _EMPTY."""
        slot = key & self._mask
        while True:
            position = self._table[slot]
            if position == _EMPTY:
                return _EMPTY
            if self._keys[position] == key:
                return slot
            slot = (slot + 1) & self._mask

    def _remove(self, slot: int) -> None:
        """Empty an index slot, moving later entries of its probe run back so that every entry
        stays reachable from its home slot (deletion without tombstones)."""
        mask = self._mask
        gap = slot
        probe = slot
        while True:
            probe = (probe + 1) & mask
            position = self._table[probe]
            if position == _EMPTY:
                break
            home = self._keys[position] & mask
            # The entry may fill the gap unless its home lies cyclically in (gap, probe].
            if (probe - home) & mask >= (probe - gap) & mask:
                self._table[gap] = position
                gap = probe
        self._table[gap] = _EMPTY


def _hash(prediction_id: str) -> int:
    digest = hashlib.blake2b(prediction_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")
