"""The ImageNet CNNs a model may name, and the feature extractor built from one: a frozen prefix
of stages and the trainable stages after it, ending in the pooled features a head reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from service.errors import ConfigError
from service.tasks.image import ImageSpec
from service.tasks.image.training._common import VisionNetwork
from service.tasks.image.training._efficientnet import SCALINGS, EfficientNetLite
from service.tasks.image.training._mobilenet import MobileNetV2
from service.tasks.image.training._resnet import ResNet
from service.tasks.image.training._weights import load_state, read_state, resolve

# TensorFlow's EfficientNet-Lite preprocessing, (pixel - 127) / 128, in ImageSpec's terms.
TF_LITE_MEAN = (127.0 / 255,) * 3
TF_LITE_STD = (128.0 / 255,) * 3


@dataclass(frozen=True)
class Architecture:
    create: Callable[[float], VisionNetwork]  # width multiplier -> randomly initialised network
    classifier: str  # state-dict prefix of the ImageNet classifier, which a task replaces
    spec: ImageSpec  # the input its ImageNet weights were trained on


def _lite(name: str) -> Architecture:
    scaling = SCALINGS[name]
    spec = ImageSpec(scaling.resolution, mean=TF_LITE_MEAN, std=TF_LITE_STD)
    return Architecture(lambda width: EfficientNetLite(scaling, width=width), "_fc.", spec)


ARCHITECTURES: dict[str, Architecture] = {
    "mobilenet_v2": Architecture(
        lambda width: MobileNetV2(width=width), "classifier.", ImageSpec()
    ),
    "resnet18": Architecture(lambda width: ResNet("resnet18", width=width), "fc.", ImageSpec()),
    "resnet50": Architecture(lambda width: ResNet("resnet50", width=width), "fc.", ImageSpec()),
    **{name: _lite(name) for name in SCALINGS},
}


def architecture(name: str) -> Architecture:
    found = ARCHITECTURES.get(name)
    if found is None:
        raise ConfigError(
            f"unknown image backbone {name!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        )
    return found


def create_network(name: str, weights: str | None = None, width: float = 1.0) -> VisionNetwork:
    """The whole ImageNet network ``name`` (classifier included), with ``weights`` loaded
    (a file path or ``bundled:<name>``) or randomly initialised."""
    arch = architecture(name)
    network = arch.create(width)
    if weights is not None:
        path = resolve(weights)
        what = f"weights {str(path)!r} do not fit {name}"
        load_state(network, read_state(path), arch.classifier, what)
    return network.eval()


class SplitFeatures(nn.Module):
    """Pooled features of a backbone: ``prefix`` stages stay frozen (no gradients, BatchNorm
    statistics fixed), ``tail`` stages train. The prefix's activations can be computed once and
    cached; ``from_prefix`` runs the rest."""

    def __init__(self, stages: list[nn.Module], trainable: int, dim: int):
        super().__init__()
        if not 0 <= trainable <= len(stages):
            raise ConfigError(f"trainable stages must be 0 to {len(stages)}; got {trainable}")
        cut = len(stages) - trainable
        self.prefix = nn.Sequential(*stages[:cut])
        self.tail = nn.Sequential(*stages[cut:])
        self.dim = dim
        self.prefix.requires_grad_(False)

    def train(self, mode: bool = True) -> SplitFeatures:
        super().train(mode)
        self.prefix.eval()
        return self

    def from_prefix(self, activations: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.tail(activations)  # nn.Module calls are typed Any
        return features.mean((2, 3))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.from_prefix(self.prefix(pixels))


def build_backbone(
    name: str, weights: str | None = None, trainable_stages: int = 1, width: float = 1.0
) -> tuple[SplitFeatures, int]:
    """The feature extractor of ``name`` split before its last ``trainable_stages`` stages, and
    its pooled feature dimension."""
    network = create_network(name, weights, width)
    features = SplitFeatures(network.stages(), trainable_stages, network.feature_dim)
    return features.eval(), features.dim
