"""The model's input geometry and normalisation, and the limits on what a caller may send."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Pillow warns above this many pixels and refuses above twice as many. Our own per-call limit is
# checked from the header before Pillow sees the bytes; keeping it at or below Pillow's default
# means Pillow's process-wide check never fires for an image we accept.
PILLOW_DEFAULT_MAX_PIXELS = 89_478_485


@dataclass(frozen=True)
class ImageSpec:
    """What the model takes: ``size`` x ``size`` RGB, FP32 channel-first, normalised as
    ``(pixel / 255 - mean) / std``. An encoded image is resized so its shorter side is
    ``size / crop_fraction`` and then centre-cropped to ``size`` (the ImageNet evaluation
    recipe: 256 then 224)."""

    size: int = 224
    crop_fraction: float = 0.875
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not 8 <= self.size <= 1024:
            raise ConfigError(f"image size {self.size} is out of range; use 8 to 1024 pixels")
        if not 0.1 <= self.crop_fraction <= 1.0:
            raise ConfigError(f"crop_fraction {self.crop_fraction} is out of range; use 0.1 to 1")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("mean and std need three values each, std above 0")

    @property
    def resize_to(self) -> int:
        """The shorter side after resizing, before the centre crop."""
        return max(self.size, round(self.size / self.crop_fraction))

    def normalise(self, pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """UINT8 ``[..., H, W, 3]`` RGB pixels to normalised FP32 ``[..., 3, H, W]``."""
        scale = (1.0 / (255.0 * np.asarray(self.std))).astype(np.float32)
        offset = (np.asarray(self.mean) / np.asarray(self.std)).astype(np.float32)
        values = pixels.astype(np.float32) * scale - offset
        return np.ascontiguousarray(np.moveaxis(values, -1, -3))


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on one encoded image, all checked before any pixel is decoded."""

    max_bytes: int = 16 * 1024 * 1024
    max_pixels: int = 25_000_000  # a 24-megapixel camera photo fits
    max_aspect_ratio: float = 20.0  # longer side over shorter side

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ConfigError(f"max_bytes must be positive; got {self.max_bytes}")
        if not 0 < self.max_pixels <= PILLOW_DEFAULT_MAX_PIXELS:
            raise ConfigError(
                f"max_pixels must be between 1 and {PILLOW_DEFAULT_MAX_PIXELS}; got {self.max_pixels}"
            )
        if self.max_aspect_ratio < 1:
            raise ConfigError(f"max_aspect_ratio must be at least 1; got {self.max_aspect_ratio}")
