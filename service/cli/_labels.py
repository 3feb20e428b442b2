"""Request batches of ``loopserve label`` and ``loopserve predict``: bounded in count and bytes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from service.domain.loop import NewSample
from service.tasks import REQUEST_BYTES

LABEL_BATCH = 500
LABEL_BATCH_BYTES = REQUEST_BYTES


def label_batches(samples: Sequence[NewSample]) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive batches of at most LABEL_BATCH samples and about
    LABEL_BATCH_BYTES of text and content bytes each: the server's transport refuses messages
    over 4 MiB."""
    weights = [len(s.text.encode()) + len(s.data) + len(s.label) + len(s.id) + 64 for s in samples]
    return size_batches(weights, LABEL_BATCH)


def size_batches(weights: Sequence[int], count: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive batches of at most ``count`` items whose ``weights`` add up
    to about LABEL_BATCH_BYTES (an item heavier than that is a batch of its own)."""
    start, size = 0, 0
    for i, weight in enumerate(weights):
        if i > start and (i - start >= count or size + weight > LABEL_BATCH_BYTES):
            yield start, i
            start, size = i, 0
        size += weight
    if start < len(weights):
        yield start, len(weights)
