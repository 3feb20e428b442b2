"""MobileNetV2 (Sandler et al. 2018) with torchvision's module layout, so that torchvision's
ImageNet state dict (``features.N…``, ``classifier.1``) loads into it unchanged."""

from __future__ import annotations

import torch
from torch import nn

from service.tasks.image.training._common import VisionNetwork, initialise

# t (expansion), c (channels), n (repeats), s (stride of the first block): one row per stage.
_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1)]
_SETTINGS += [(6, 160, 3, 2), (6, 320, 1, 1)]
LAST_CHANNELS = 1280


def _divisible(value: float, divisor: int = 8) -> int:
    """Channels rounded to a multiple of 8, never down by more than 10 % (torchvision's rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBNReLU(nn.Sequential):
    def __init__(self, inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, out: int, stride: int, expand: int):
        super().__init__()
        hidden = round(inp * expand)
        self.use_residual = stride == 1 and inp == out
        layers: list[nn.Module] = [ConvBNReLU(inp, hidden, kernel=1)] if expand != 1 else []
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out, 1, bias=False),
            nn.BatchNorm2d(out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(VisionNetwork):
    def __init__(self, num_classes: int = 1000, width: float = 1.0, dropout: float = 0.2):
        super().__init__()
        channels = _divisible(32 * width)
        self.last_channels = _divisible(LAST_CHANNELS * max(1.0, width))
        blocks: list[nn.Module] = [ConvBNReLU(3, channels, stride=2)]
        self.stage_ends = [1]  # index after each stage's last module in ``features``
        for t, c, n, s in _SETTINGS:
            out = _divisible(c * width)
            for i in range(n):
                blocks.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
            self.stage_ends.append(len(blocks))
        blocks.append(ConvBNReLU(channels, self.last_channels, kernel=1))
        self.stage_ends.append(len(blocks))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(self.last_channels, num_classes)
        )
        initialise(self)

    def stages(self) -> list[nn.Module]:
        """Stem, the seven inverted-residual stages, the last 1x1 convolution."""
        starts = [0, *self.stage_ends[:-1]]
        return [
            nn.Sequential(*list(self.features)[a:b])
            for a, b in zip(starts, self.stage_ends, strict=True)
        ]

    @property
    def feature_dim(self) -> int:
        return self.last_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        logits: torch.Tensor = self.classifier(pooled)  # nn.Module calls are typed Any
        return logits
