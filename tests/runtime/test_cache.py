"""The response cache: keys of input tensors, least recently used entries within both bounds."""

from __future__ import annotations

import numpy as np
import pytest

from service.runtime import BatchResult, ResponseCache, input_key
from service.runtime._cache import ENTRY_OVERHEAD_BYTES
from service.types import Tensor

LABELS = ["a", "b"]


def result(version: int = 1, rows: int = 1, dim: int = 4) -> BatchResult:
    probabilities = np.full((rows, len(LABELS)), 0.5, dtype=np.float32)
    return BatchResult(version, LABELS, probabilities, np.zeros((rows, dim), np.float32), 0.01)


def key(text: bytes) -> bytes:
    return input_key([Tensor("text", "BYTES", (1,), [text])])


def size(entry: BatchResult) -> int:
    return entry.probabilities.nbytes + entry.embedding.nbytes + ENTRY_OVERHEAD_BYTES


def test_equal_inputs_have_equal_keys_and_any_difference_changes_it() -> None:
    texts = Tensor("text", "BYTES", (2,), [b"ab", b"c"])
    assert input_key([texts]) == input_key([Tensor("text", "BYTES", (2,), [b"ab", b"c"])])
    others = [
        Tensor("text", "BYTES", (2,), [b"a", b"bc"]),  # the same bytes, split elsewhere
        Tensor("text", "BYTES", (2, 1), [b"ab", b"c"]),
        Tensor("texts", "BYTES", (2,), [b"ab", b"c"]),
        Tensor("text", "BYTES", (2,), [b"ab", b"d"]),
    ]
    assert len({input_key([texts]), *(input_key([t]) for t in others)}) == 5
    pixels = np.arange(12, dtype=np.float32).reshape(1, 3, 2, 2)
    image = Tensor("image", "FP32", pixels.shape, pixels)
    assert input_key([image]) == input_key([Tensor("image", "FP32", pixels.shape, pixels.copy())])
    assert input_key([image]) != input_key([Tensor("image", "FP32", pixels.shape, pixels + 1)])


def test_a_kept_answer_is_found_for_its_version_only_and_cannot_be_changed() -> None:
    cache = ResponseCache(max_entries=10, max_bytes=1 << 20)
    answer = result(version=3)
    cache.put(key(b"x"), answer)
    kept = cache.get(3, key(b"x"))
    assert kept is not None and kept.version == 3 and kept.queue_seconds == 0.0
    assert np.array_equal(kept.probabilities, answer.probabilities)
    assert kept.probabilities is not answer.probabilities  # not a view of the request's batch
    with pytest.raises(ValueError):
        kept.probabilities[0, 0] = 1.0
    assert cache.get(4, key(b"x")) is None and cache.get(3, key(b"y")) is None


def test_the_least_recently_used_entry_leaves_beyond_max_entries() -> None:
    cache = ResponseCache(max_entries=2, max_bytes=1 << 20)
    cache.put(key(b"1"), result())
    cache.put(key(b"2"), result())
    assert cache.get(1, key(b"1")) is not None  # 1 is now more recent than 2
    cache.put(key(b"3"), result())
    assert len(cache) == 2
    assert cache.get(1, key(b"2")) is None
    assert cache.get(1, key(b"1")) is not None and cache.get(1, key(b"3")) is not None
    assert cache.size_bytes == 2 * size(result())


def test_bytes_are_bounded_and_an_answer_larger_than_the_bound_is_not_kept() -> None:
    one = size(result(dim=1000))
    cache = ResponseCache(max_entries=100, max_bytes=2 * one + 10)
    for i in range(5):
        cache.put(key(bytes([i])), result(dim=1000))
        assert cache.size_bytes <= cache.max_bytes
    assert len(cache) == 2 and cache.size_bytes == 2 * one
    cache.put(key(b"huge"), result(rows=100, dim=1000))
    assert cache.get(1, key(b"huge")) is None and len(cache) == 2


def test_the_same_key_again_replaces_its_entry_and_clear_empties() -> None:
    cache = ResponseCache(max_entries=10, max_bytes=1 << 20)
    cache.put(key(b"x"), result())
    cache.put(key(b"x"), result())
    assert len(cache) == 1 and cache.size_bytes == size(result())
    assert cache.clear() == 1
    assert len(cache) == 0 and cache.size_bytes == 0 and cache.get(1, key(b"x")) is None
