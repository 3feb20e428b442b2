"""What the payload of a labeled sample for an image model must look like: one encoded image
(JPEG, PNG or WebP) as content bytes, that the safe decoder decodes within the model's limits.

Decoding costs milliseconds per image: callers validate on a worker thread, never on the event
loop (``ImageInputs.decode_in_thread``).
"""

from __future__ import annotations

from service.domain.loop import NewSample
from service.errors import InvalidInput
from service.tasks.image._container import SEND
from service.tasks.image._decode import decode_pixels
from service.tasks.image._spec import DecodeLimits, ImageSpec


def validate_image_sample(
    index: int, sample: NewSample, spec: ImageSpec, limits: DecodeLimits
) -> None:
    """InvalidInput naming ``sample[index]`` unless its content is an image the model could be
    trained on: within the byte, pixel and aspect limits and decodable to the end (a truncated
    or corrupt file would fail the fine-tune job later, not the caller now)."""
    if sample.text:
        raise InvalidInput(
            f"sample[{index}] has a text; an image model takes the image file as Sample.content, "
            "with an empty text"
        )
    if not sample.data:
        raise InvalidInput(f"sample[{index}] has no content; {SEND} as Sample.content")
    try:
        decode_pixels(sample.data, spec, limits)
    except InvalidInput as exc:
        raise InvalidInput(f"sample[{index}]: {exc}") from None
