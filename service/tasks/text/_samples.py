"""What the payload of a labeled sample for a text model must look like: a plain, bounded text."""

from __future__ import annotations

import unicodedata

from service.domain.loop import NewSample
from service.errors import InvalidInput


def validate_text_sample(index: int, sample: NewSample, max_text_bytes: int) -> None:
    """InvalidInput naming ``sample[index]`` unless it is a non-blank text of at most
    ``max_text_bytes`` UTF-8 bytes, without control characters, and without content bytes."""
    if sample.data:
        raise InvalidInput(
            f"sample[{index}] has content bytes; a text model takes the text as Sample.text, "
            "with empty content"
        )
    # Characters first: a text of more characters than the byte limit is too long whatever its
    # encoding, and is refused without encoding it.
    text = sample.text
    if len(text) > max_text_bytes or len(text.encode()) > max_text_bytes:
        raise InvalidInput(f"sample[{index}] text is longer than {max_text_bytes} bytes")
    if not text.strip():
        raise InvalidInput(f"sample[{index}] has an empty text")
    control = _control_character(text)
    if control is not None:
        raise InvalidInput(
            f"sample[{index}] text contains the control character U+{ord(control):04X}; "
            "send plain text (tabs and line breaks are fine)"
        )


def _control_character(text: str) -> str | None:
    """The first control character of ``text`` other than tab, line feed and carriage return:
    no labeled example a classifier should learn from contains one."""
    return next((c for c in text if unicodedata.category(c) == "Cc" and c not in "\t\n\r"), None)
