"""A model's response cache: the outputs of inputs the serving version answered before.

An entry is keyed by the version that answered and a 128-bit BLAKE2b digest of the request's
input tensors (names, datatypes, shapes and data). It holds the version's whole answer for those
inputs (probabilities and embedding of every item), so the outputs a request asks for are cut from
it like from a fresh answer: they need not be part of the key, and neither do request
parameters, which change no answer. Entries are bounded in number and in bytes and leave least
recently used first; :meth:`ResponseCache.clear` drops them all when the serving version changes.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import struct
import threading
from collections.abc import Sequence

import numpy as np

from service.metrics import Metrics
from service.runtime._batcher import BatchResult
from service.types import Tensor

_LENGTH = struct.Struct("<I")
# What an entry costs besides its arrays: the key, the record and the arrays' headers.
ENTRY_OVERHEAD_BYTES = 400
DIGEST_BYTES = 16


def input_key(inputs: Sequence[Tensor]) -> bytes:
    """The digest of the request's input tensors: equal inputs, equal key. Each field is
    length-prefixed, so no two different requests concatenate to the same bytes."""
    digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
    for tensor in inputs:
        header = f"{tensor.name}\0{tensor.datatype}\0{tensor.shape}".encode()
        digest.update(_LENGTH.pack(len(header)))
        digest.update(header)
        if isinstance(tensor.data, list):
            for element in tensor.data:
                digest.update(_LENGTH.pack(len(element)))
                digest.update(element)
        else:
            digest.update(np.ascontiguousarray(tensor.data).tobytes())
    return digest.digest()


class ResponseCache:
    """Least recently used answers, at most ``max_entries`` of them and ``max_bytes`` in all.
    Thread-safe: requests use it on the event loop, a hot swap clears it on a worker thread."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: collections.OrderedDict[tuple[int, bytes], BatchResult] = (
            collections.OrderedDict()
        )
        self._sizes: dict[tuple[int, bytes], int] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, version: int, key: bytes) -> BatchResult | None:
        """The answer ``version`` gave to the inputs of ``key``, if it is still kept."""
        with self._lock:
            result = self._entries.get((version, key))
            if result is not None:
                self._entries.move_to_end((version, key))
            return result

    def put(self, key: bytes, result: BatchResult) -> None:
        """Keep ``result`` (its version's answer to the inputs of ``key``), evicting the least
        recently used entries beyond the bounds. An answer larger than ``max_bytes`` alone is
        not kept."""
        kept = _detached(result)
        size = kept.probabilities.nbytes + kept.embedding.nbytes + ENTRY_OVERHEAD_BYTES
        if size > self.max_bytes:
            return
        entry = (result.version, key)
        with self._lock:
            self._drop(entry)
            self._entries[entry] = kept
            self._sizes[entry] = size
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def clear(self) -> int:
        """Drop every entry (the serving version changed); how many there were."""
        with self._lock:
            dropped = len(self._entries)
            self._entries.clear()
            self._sizes.clear()
            self._bytes = 0
        return dropped

    def _drop(self, entry: tuple[int, bytes]) -> None:
        """Forget ``entry`` if it is kept (under the lock)."""
        if self._entries.pop(entry, None) is not None:
            self._bytes -= self._sizes.pop(entry)


class ModelResponseCache:
    """One served model's :class:`ResponseCache` with its metrics: hits and misses counted,
    entries and bytes gauged."""

    def __init__(
        self, model: str, max_entries: int, max_bytes: int, metrics: Metrics, hash_in_thread: bool
    ) -> None:
        self._cache = ResponseCache(max_entries, max_bytes)
        # Hashing megabytes of images would hold the event loop for milliseconds.
        self._hash_in_thread = hash_in_thread
        self._hits = metrics.cache_requests.labels(model, "hit")
        self._misses = metrics.cache_requests.labels(model, "miss")
        self._entries = metrics.cache_entries.labels(model)
        self._size = metrics.cache_bytes.labels(model)

    async def lookup(
        self, inputs: Sequence[Tensor], version: int
    ) -> tuple[bytes, BatchResult | None]:
        """The key of ``inputs`` and ``version``'s answer to them, if kept (counted)."""
        key = (
            await asyncio.to_thread(input_key, inputs)
            if self._hash_in_thread
            else input_key(inputs)
        )
        result = self._cache.get(version, key)
        (self._misses if result is None else self._hits).inc()
        return key, result

    def keep(self, key: bytes, result: BatchResult) -> None:
        self._cache.put(key, result)
        self._gauge()

    def clear(self) -> None:
        self._cache.clear()
        self._gauge()

    def _gauge(self) -> None:
        self._entries.set(len(self._cache))
        self._size.set(self._cache.size_bytes)


def _detached(result: BatchResult) -> BatchResult:
    """``result`` with arrays of its own, read-only: a request's rows may be a view of its whole
    batch (which the cache must not keep alive), and every hit shares them."""
    probabilities, embedding = result.probabilities.copy(), result.embedding.copy()
    probabilities.flags.writeable = False
    embedding.flags.writeable = False
    return dataclasses.replace(
        result, probabilities=probabilities, embedding=embedding, queue_seconds=0.0
    )
