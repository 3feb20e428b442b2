"""Training images decoded exactly as the server decodes them (``service.tasks.image``), so a
model trains on the pixels it will be served: the same limits, JPEG ``draft()``, EXIF transpose,
resize and centre crop."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from service.domain.loop import CONTENT_KEY_PREFIX
from service.errors import ConfigError, InvalidInput
from service.tasks.image import ImageOptions, decode_pixels

Pixels = npt.NDArray[np.uint8]  # [n, size, size, 3] RGB


def decode_files(paths: Sequence[Path], options: ImageOptions) -> Pixels:
    """Seed images; ConfigError naming the first file the server would refuse."""
    decoded = []
    for path in paths:
        try:
            decoded.append(_decode(path.read_bytes(), options))
        except OSError as exc:
            raise ConfigError(f"seed image {path}: {exc.strerror or exc}") from None
        except InvalidInput as exc:
            raise ConfigError(f"seed image {path}: {exc}") from None
    return _stack(decoded, options)


def read_content(inputs_dir: Path, key: str) -> bytes:
    """The bytes a fine-tune job's spec names by content key (``<inputs dir>/<hex>``)."""
    return (inputs_dir / key.removeprefix(CONTENT_KEY_PREFIX)).read_bytes()


def decode_keys(keys: Sequence[str], inputs_dir: Path, options: ImageOptions) -> Pixels:
    """A job's images by content key. The server checked each one when it was posted."""
    return _stack([_decode(read_content(inputs_dir, key), options) for key in keys], options)


def normalised(pixels: Pixels, options: ImageOptions) -> torch.Tensor:
    """FP32 ``[n, 3, size, size]`` model inputs, normalised as the server normalises."""
    return torch.from_numpy(options.spec().normalise(pixels))


def _decode(data: bytes, options: ImageOptions) -> Pixels:
    return decode_pixels(data, options.spec(), options.limits())


def _stack(decoded: list[Pixels], options: ImageOptions) -> Pixels:
    if not decoded:
        return np.empty((0, options.size, options.size, 3), dtype=np.uint8)
    return np.stack(decoded)
