"""What a posted labeled sample must look like before anything is stored, logged or echoed."""

from __future__ import annotations

import unicodedata

from service.domain.loop import (
    MAX_LABEL_CHARS,
    MAX_PREDICTION_ID_CHARS,
    MAX_SAMPLE_ID_CHARS,
    MAX_SAMPLES_PER_CALL,
    NewSample,
)
from service.errors import InvalidInput, check_length, quote


def validate_samples(
    samples: list[NewSample], *, max_text_bytes: int, labels: set[str], allow_new_labels: bool
) -> None:
    """Refuse the whole call with InvalidInput naming the first bad sample."""
    if not samples:
        raise InvalidInput("no samples; send at least one {text, label}")
    if len(samples) > MAX_SAMPLES_PER_CALL:
        raise InvalidInput(f"{len(samples)} samples in one call; at most {MAX_SAMPLES_PER_CALL}")
    for i, sample in enumerate(samples):
        _check_sample_lengths(i, sample, max_text_bytes)
        if not sample.text.strip():
            raise InvalidInput(f"sample[{i}] has an empty text")
        control = _control_character(sample.text)
        if control is not None:
            raise InvalidInput(
                f"sample[{i}] text contains the control character U+{ord(control):04X}; "
                "send plain text (tabs and line breaks are fine)"
            )
        _check_label(i, sample.label, labels, allow_new_labels)


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


def _check_sample_lengths(index: int, sample: NewSample, max_text_bytes: int) -> None:
    """Bound what a sample may make the server store, log or echo."""
    check_length(f"sample[{index}] id", sample.id, MAX_SAMPLE_ID_CHARS)
    check_length(f"sample[{index}] label", sample.label, MAX_LABEL_CHARS)
    check_length(f"sample[{index}] prediction_id", sample.prediction_id, MAX_PREDICTION_ID_CHARS)
    # Characters first: a text of more characters than the byte limit is too long whatever its
    # encoding, and is refused without encoding it.
    if len(sample.text) > max_text_bytes or len(sample.text.encode()) > max_text_bytes:
        raise InvalidInput(f"sample[{index}] text is longer than {max_text_bytes} bytes")


def _control_character(text: str) -> str | None:
    """The first control character of ``text`` other than tab, line feed and carriage return:
    no labeled example a classifier should learn from contains one."""
    return next((c for c in text if unicodedata.category(c) == "Cc" and c not in "\t\n\r"), None)
