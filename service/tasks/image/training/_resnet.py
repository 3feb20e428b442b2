"""ResNet-18 and ResNet-50 (He et al. 2016; the "v1.5" stride placement of torchvision) with
torchvision's module names (``conv1``, ``layer1.0.downsample.0``, ``fc``…), so that torchvision's
ImageNet state dicts load into them unchanged."""

from __future__ import annotations

import torch
from torch import nn

from service.tasks.image.training._common import VisionNetwork, initialise


def _conv(inp: int, out: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inp, out, kernel, stride, kernel // 2, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inp: int, planes: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = _conv(inp, planes, 3, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv(planes, planes, 3), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(inp, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return _residual(self, out, x)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inp: int, planes: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = _conv(inp, planes, 1), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv(planes, planes, 3, stride), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = _conv(planes, planes * 4, 1), nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(inp, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return _residual(self, out, x)


def _residual(block: BasicBlock | Bottleneck, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """ReLU of the block's output plus its input (downsampled where their shapes differ)."""
    shortcut = block.downsample(x) if block.downsample is not None else x
    joined: torch.Tensor = block.relu(out + shortcut)  # nn.Module calls are typed Any
    return joined


def _shortcut(inp: int, out: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and inp == out:
        return None
    return nn.Sequential(_conv(inp, out, 1, stride), nn.BatchNorm2d(out))


DEPTHS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
}


class ResNet(VisionNetwork):
    def __init__(self, depth: str, num_classes: int = 1000, width: float = 1.0):
        """``width`` scales every layer's channels (tests build small networks with it)."""
        super().__init__()
        block, counts = DEPTHS[depth]
        base = max(8, round(64 * width))
        self.conv1, self.bn1 = _conv(3, base, 7, 2), nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels, layers = base, []
        for index, count in enumerate(counts):
            planes = base * 2**index
            blocks: list[nn.Module] = []
            for i in range(count):
                blocks.append(block(channels, planes, 2 if i == 0 and index > 0 else 1))
                channels = planes * block.expansion
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self._feature_dim = channels
        self.fc = nn.Linear(channels, num_classes)
        initialise(self)

    @property
    def feature_dim(self) -> int:
        return self._feature_dim

    def stages(self) -> list[nn.Module]:
        """Stem (convolution, batch norm, ReLU, max pool), then ``layer1`` to ``layer4``."""
        stem = nn.Sequential(self.conv1, self.bn1, self.relu, self.maxpool)
        return [stem, self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        logits: torch.Tensor = self.fc(x.mean((2, 3)))  # nn.Module calls are typed Any
        return logits
