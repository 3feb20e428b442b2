"""What a posted labeled sample must look like before anything is stored, logged or echoed.

The checks of every sample live here (the call's size, ids, labels); its payload, a text or the
bytes of an image, is the model's task's to check (``InputContract.validate_sample``).
"""

from __future__ import annotations

from service.domain.loop import (
    MAX_CONTENT_BYTES_PER_CALL,
    MAX_LABEL_CHARS,
    MAX_PREDICTION_ID_CHARS,
    MAX_SAMPLE_ID_CHARS,
    MAX_SAMPLES_PER_CALL,
    NewSample,
)
from service.errors import InvalidInput, check_length, quote
from service.tasks import InputContract


def validate_samples(
    samples: list[NewSample], *, inputs: InputContract, labels: set[str], allow_new_labels: bool
) -> None:
    """Refuse the whole call with InvalidInput naming the first bad sample. Blocking where
    ``inputs.decode_in_thread`` (images are decoded)."""
    _check_call(samples)
    for i, sample in enumerate(samples):
        _check_sample_lengths(i, sample)
        inputs.validate_sample(i, sample)
        _check_label(i, sample.label, labels, allow_new_labels)


def _check_call(samples: list[NewSample]) -> None:
    """Bounds on the call as a whole, checked before any sample is looked at."""
    if not samples:
        raise InvalidInput("no samples; send at least one sample: a text or content, and a label")
    if len(samples) > MAX_SAMPLES_PER_CALL:
        raise InvalidInput(f"{len(samples)} samples in one call; at most {MAX_SAMPLES_PER_CALL}")
    content = sum(len(sample.data) for sample in samples)
    if content > MAX_CONTENT_BYTES_PER_CALL:
        raise InvalidInput(
            f"the samples of one call carry {content} bytes of content; at most "
            f"{MAX_CONTENT_BYTES_PER_CALL}: send fewer per call"
        )


def _check_label(index: int, raw: str, labels: set[str], allow_new_labels: bool) -> None:
    label = raw.strip()
    if not label or label != raw or any(ord(c) < 32 for c in label):
        raise InvalidInput(
            f"sample[{index}] label {quote(raw)} must be non-empty, trimmed, printable"
        )
    if label not in labels and not allow_new_labels:
        raise InvalidInput(
            f"sample[{index}] label {quote(label)} is not one of the model's labels "
            f"({', '.join(sorted(labels))}); set [adaptation] allow_new_labels = true to add labels"
        )


def _check_sample_lengths(index: int, sample: NewSample) -> None:
    """Bound what a sample may make the server store, log or echo."""
    check_length(f"sample[{index}] id", sample.id, MAX_SAMPLE_ID_CHARS)
    check_length(f"sample[{index}] label", sample.label, MAX_LABEL_CHARS)
    check_length(f"sample[{index}] prediction_id", sample.prediction_id, MAX_PREDICTION_ID_CHARS)
