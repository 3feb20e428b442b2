"""Image classification behind the task seam: encoded or preprocessed images in, one FP32
``[n, 3, size, size]`` feed per batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.config import ModelDefinition
from service.domain.loop import NewSample
from service.domain.versions import VersionMeta
from service.runtime import FeedGroup
from service.tasks.image._client import ImageClient
from service.tasks.image._inputs import ImageInputs
from service.tasks.image._options import ImageOptions
from service.tasks.image._seed import seed_samples

NAME = "image-classification"
ONNX_INPUT = "pixels"  # the exported graph's input: FP32 [batch, 3, size, size], normalised


class ImageClassification:
    name = NAME
    training = "service.tasks.image.training"

    def input_contract(self, definition: ModelDefinition) -> ImageInputs:
        return ImageInputs(self._options(definition))

    def version_inputs(self, definition: ModelDefinition) -> dict[str, Any]:
        return self._options(definition).as_dict()

    def seed_samples(self, definition: ModelDefinition) -> Iterator[NewSample]:
        return seed_samples(definition.seed_path)

    def job_backbone(self, definition: ModelDefinition, meta: VersionMeta) -> str:
        """The backbone the version recorded, resolved (architecture and weights file)."""
        return meta.backbone

    def preprocessor(self, version_dir: Path, meta: VersionMeta) -> ImageFeeds:
        where = f"{version_dir / 'meta.json'} inputs"
        return ImageFeeds(ImageOptions.parse(meta.inputs, where))

    def client(self) -> ImageClient:
        return ImageClient(self.name)

    @staticmethod
    def _options(definition: ModelDefinition) -> ImageOptions:
        return ImageOptions.parse(definition.inputs, f"model {definition.name!r} [input]")


class ImageFeeds:
    """One version's preprocessor: decoded images are already model-sized, so a batch is one
    stacked feed."""

    def __init__(self, options: ImageOptions) -> None:
        self._options = options

    def groups(self, items: Sequence[Any]) -> list[FeedGroup]:
        return [FeedGroup(list(range(len(items))), {ONNX_INPUT: np.stack(list(items))})]

    def warmup_items(self) -> list[Any]:
        s = self._options.size
        return [np.zeros((3, s, s), dtype=np.float32)] * 2

    def properties(self) -> dict[str, str]:
        o = self._options
        return {
            "image_size": str(o.size),
            "crop_fraction": str(o.crop_fraction),
            "mean": ",".join(map(str, o.mean)),
            "std": ",".join(map(str, o.std)),
            "image_input": "BYTES [n] JPEG/PNG/WebP, UINT8 [n,H,W,3], or FP32 [n,3,H,W] normalised",
        }
