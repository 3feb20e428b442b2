"""What the architectures share."""

from __future__ import annotations

from torch import nn


def initialise(model: nn.Module) -> None:
    """torchvision's initialisation: what a backbone starts from without pretrained weights."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


class VisionNetwork(nn.Module):
    """An ImageNet CNN: stages of feature layers in order, then a pooled feature vector."""

    @property
    def feature_dim(self) -> int:
        raise NotImplementedError

    def stages(self) -> list[nn.Module]:
        """The feature layers from the stem to the last, grouped at natural cut points."""
        raise NotImplementedError
