"""Encoded image bytes from an untrusted caller to one model input, FP32 ``[3, size, size]``.

Order matters: every bound is checked before the work it bounds. The byte size first, then the
container (format allow-list, truncation, appended data, header size: ``_container``), then the
pixel count and aspect ratio from that header, and only then does Pillow decode, restricted to
the one format the bytes showed and cross-checked against it. Decisions:

- animations (APNG, animated WebP): the first frame is used, the rest are never decoded;
- transparency (RGBA, LA, palette or RGB with a transparent colour) is composited on white, as a
  viewer shows it; dropping alpha instead would expose whatever colour hides under transparent
  pixels (often black, sometimes stale content);
- EXIF orientation is applied; grayscale, palette, CMYK and 16-bit images become 8-bit RGB;
- JPEG is decoded at a reduced scale (``draft``) when the model size allows, which is most of
  the decoding cost of a camera photo.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from service.errors import InvalidInput
from service.tasks.image._container import ALLOWED_FORMATS, SEND, Container, inspect
from service.tasks.image._spec import DecodeLimits, ImageSpec

# What a caller may say a file is (a MIME type, an extension, a format name): the format meant.
_CLAIMS = {
    "jpeg": "JPEG",
    "jpg": "JPEG",
    "jpe": "JPEG",
    "jfif": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
}
_SIXTEEN_BIT = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


def decode_image(
    data: bytes,
    spec: ImageSpec,
    limits: DecodeLimits | None = None,
    claimed_format: str | None = None,
) -> npt.NDArray[np.float32]:
    """``data`` (JPEG, PNG or WebP) as the model's normalised FP32 ``[3, size, size]`` input.

    ``claimed_format`` is what the caller said the file is (``"image/png"``, ``".jpg"``,
    ``"webp"``); a claim that differs from the bytes is refused. Every refusal is InvalidInput
    with a message that says what to send.
    """
    pixels = decode_pixels(data, spec, limits, claimed_format)
    return spec.normalise(pixels)


def decode_pixels(
    data: bytes,
    spec: ImageSpec,
    limits: DecodeLimits | None = None,
    claimed_format: str | None = None,
) -> npt.NDArray[np.uint8]:
    """As ``decode_image`` but the resized, cropped UINT8 RGB pixels ``[size, size, 3]``."""
    limits = limits or DecodeLimits()
    check_size(data, limits)
    container = inspect(data)
    _check_claim(claimed_format, container.format)
    check_geometry(container, limits)
    with _pillow_errors(container.format):
        image = _open(data, container)
        _draft(image, spec)
        image.load()
        rgb = _to_rgb(ImageOps.exif_transpose(image))
        return np.asarray(_resize_crop(rgb, spec), dtype=np.uint8)


def check_size(data: bytes, limits: DecodeLimits) -> None:
    if not data:
        raise InvalidInput(f"image is empty (0 bytes); {SEND}")
    if len(data) > limits.max_bytes:
        raise InvalidInput(
            f"image is {len(data)} bytes, over the limit of {limits.max_bytes}; "
            "send a smaller file (the model sees it at a few hundred pixels)"
        )


def check_geometry(container: Container, limits: DecodeLimits) -> None:
    """Pixel count and aspect ratio from the header, before anything is decoded."""
    width, height = container.width, container.height
    if width * height > limits.max_pixels:
        raise InvalidInput(
            f"image is {width}x{height} = {width * height} pixels, over the limit of "
            f"{limits.max_pixels}; send it downscaled"
        )
    ratio = max(width, height) / min(width, height)
    if ratio > limits.max_aspect_ratio:
        raise InvalidInput(
            f"image is {width}x{height}, an aspect ratio of {ratio:.0f}:1, over the limit of "
            f"{limits.max_aspect_ratio:g}:1; send a crop of the region to classify"
        )


def _check_claim(claimed: str | None, actual: str) -> None:
    if claimed is None:
        return
    key = claimed.strip().lower().removeprefix("image/").removeprefix(".")
    meant = _CLAIMS.get(key)
    if meant is None:
        raise InvalidInput(f"format {claimed[:40]!r} is not accepted; {SEND}")
    if meant != actual:
        raise InvalidInput(
            f"file is declared as {meant} but its bytes are {actual}; "
            "send the file with its true format"
        )


@contextmanager
def _pillow_errors(name: str) -> Iterator[None]:
    """Pillow reports a corrupt file with many exception types (OSError, SyntaxError,
    ValueError, struct.error, IndexError…); all are the caller's bad input here. Pillow's own
    decompression-bomb check is not relied on: it is a process-wide setting that warns rather
    than refuses, and our per-call limit (at most Pillow's) has refused larger images already."""
    try:
        yield
    except InvalidInput:
        raise
    except Exception as error:
        raise InvalidInput(
            f"{name} image could not be decoded ({type(error).__name__}: corrupt or an "
            f"unsupported encoding); {SEND}"
        ) from error


def _open(data: bytes, container: Container) -> Image.Image:
    """Pillow restricted to the format the bytes showed; its header must agree with ours."""
    assert container.format in ALLOWED_FORMATS
    image = Image.open(io.BytesIO(data), formats=[container.format])
    if image.format != container.format or image.size != (container.width, container.height):
        raise InvalidInput(
            f"{container.format} image is inconsistent: its header says "
            f"{container.width}x{container.height}, the decoder sees {image.format} "
            f"{image.size[0]}x{image.size[1]}; {SEND}"
        )
    return image


def _draft(image: Image.Image, spec: ImageSpec) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale while the result stays at least as large as
    the resize target: cheaper and less memory than decoding full size and shrinking."""
    if image.format != "JPEG":
        return
    width, height = image.size
    scale = spec.resize_to / min(width, height)
    if scale < 1:
        image.draft(image.mode, (math.ceil(width * scale), math.ceil(height * scale)))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _SIXTEEN_BIT:  # 16-bit gray: keep the high byte (convert() would clip)
        values = np.asarray(image).astype(np.uint32)
        image = Image.fromarray((np.minimum(values, 65535) >> 8).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _resize_crop(image: Image.Image, spec: ImageSpec) -> Image.Image:
    """Shorter side to ``spec.resize_to``, then the centre ``spec.size`` square, in one
    resampling of just the source region the crop keeps."""
    width, height = image.size
    side = min(width, height) * spec.size / spec.resize_to  # the crop, in source pixels
    left, top = (width - side) / 2, (height - side) / 2
    return image.resize(
        (spec.size, spec.size),
        Image.Resampling.BILINEAR,
        box=(left, top, left + side, top + side),
        reducing_gap=3.0,
    )
