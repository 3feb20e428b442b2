"""An image model's ``[input]`` table: its geometry, normalisation and request limits."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from service.config import from_table
from service.errors import ConfigError
from service.tasks.image._spec import IMAGENET_MEAN, IMAGENET_STD, DecodeLimits, ImageSpec


@dataclass(frozen=True)
class ImageOptions:
    """``[input]`` keys of an image-classification model (every one optional)."""

    size: int = 224  # the model's input is size x size RGB
    crop_fraction: float = 0.875  # resize the shorter side to size / crop_fraction, centre-crop
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    max_images_per_request: int = 32
    max_image_bytes: int = 4 * 1024 * 1024  # per encoded image (a gRPC message is at most 4 MiB)
    max_pixels: int = 25_000_000  # per encoded image, read from its header before decoding
    max_aspect_ratio: float = 20.0

    @staticmethod
    def parse(table: dict[str, Any], where: str) -> ImageOptions:
        options = from_table(ImageOptions, table, where)
        if len(options.mean) != 3 or len(options.std) != 3:
            raise ConfigError(f"{where}: mean and std need three values each (R, G, B)")
        if options.max_images_per_request < 1:
            raise ConfigError(f"{where}: max_images_per_request must be >= 1")
        try:
            options.spec()
            options.limits()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return options

    def spec(self) -> ImageSpec:
        mean, std = self.mean, self.std
        return ImageSpec(
            self.size, self.crop_fraction, (mean[0], mean[1], mean[2]), (std[0], std[1], std[2])
        )

    def limits(self) -> DecodeLimits:
        return DecodeLimits(self.max_image_bytes, self.max_pixels, self.max_aspect_ratio)

    def as_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }
