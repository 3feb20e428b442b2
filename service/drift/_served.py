"""What drift monitoring needs from a served model; the serving layer satisfies it without drift
importing serving."""

from __future__ import annotations

from typing import Protocol

from service.config import ModelDefinition
from service.registry import ModelRegistry
from service.runtime import LoadedVersion


class MonitoredModel(Protocol):
    @property
    def definition(self) -> ModelDefinition:
        """The model's definition: its drift recipe above all."""
        ...

    @property
    def registry(self) -> ModelRegistry:
        """Where the monitor reads a version's calibration and training-reference inputs."""
        ...

    @property
    def serving_version(self) -> LoadedVersion | None:
        """The version answering requests now (None while loading)."""
        ...
