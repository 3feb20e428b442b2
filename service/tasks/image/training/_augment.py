"""Training-time augmentation of image batches with kornia, on pixels scaled to [0, 1] and before
the model's normalisation, as ``[train] augment`` names it. Each view is drawn once, before
training: the frozen prefix's activations of every view are then computed once and cached."""

from __future__ import annotations

from collections.abc import Sequence

import kornia.augmentation as K
import torch

from service.tasks.image import ImageOptions
from service.tasks.image.training._images import Pixels, normalised

CHUNK = 64  # images augmented at a time: bounds the memory of a view


def _transform(name: str, size: int) -> K.AugmentationBase2D:
    transform: K.AugmentationBase2D
    if name == "hflip":
        transform = K.RandomHorizontalFlip(p=0.5)
    elif name == "vflip":
        transform = K.RandomVerticalFlip(p=0.5)
    elif name == "crop":  # a part of at least 60 % of the image, resized back to the model size
        transform = K.RandomResizedCrop((size, size), scale=(0.6, 1.0), ratio=(3 / 4, 4 / 3))
    elif name == "color":
        # No hue shift: a colour can be the class, and kornia's hue is most of the cost.
        transform = K.ColorJitter(0.3, 0.3, 0.3, 0.0, p=0.8)
    else:
        raise ValueError(f"unknown augmentation {name!r}")
    return transform


class Augmenter:
    def __init__(self, names: Sequence[str], options: ImageOptions, seed: int) -> None:
        self.options = options
        self.names = list(names)
        transforms = [_transform(name, options.size) for name in self.names]
        self._pipeline = K.AugmentationSequential(*transforms) if transforms else None
        self._generator = torch.Generator().manual_seed(seed)
        self._mean = torch.tensor(options.mean).view(1, 3, 1, 1)
        self._std = torch.tensor(options.std).view(1, 3, 1, 1)

    def views(self, pixels: Pixels, count: int) -> list[torch.Tensor]:
        """The plain images (exactly what the server computes), then ``count`` augmented views
        of them, each FP32 ``[n, 3, size, size]`` normalised. Without augmentations only the
        plain images."""
        plain = normalised(pixels, self.options)
        if self._pipeline is None or count == 0 or len(pixels) == 0:
            return [plain]
        return [plain, *(self._view(pixels) for _ in range(count))]

    @torch.no_grad()
    def _view(self, pixels: Pixels) -> torch.Tensor:
        assert self._pipeline is not None
        chunks = []
        for start in range(0, len(pixels), CHUNK):
            scaled = torch.from_numpy(pixels[start : start + CHUNK]).permute(0, 3, 1, 2) / 255.0
            # kornia draws from torch's global generator: seed it from ours, reproducibly.
            torch.manual_seed(int(torch.randint(2**31, (1,), generator=self._generator)))
            augmented = self._pipeline(scaled.float()).clamp(0.0, 1.0)
            chunks.append((augmented - self._mean) / self._std)
        return torch.cat(chunks)
