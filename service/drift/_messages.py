"""What the drift monitor and its worker process send each other over their connections."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.config import DriftRecipe
from service.domain.versions import VersionMeta
from service.drift._reduce import Projection
from service.drift._types import DetectorStatus, Observations


@dataclass(frozen=True)
class ReferenceInputs:
    """What the worker needs to pass a version's training inputs through that version."""

    onnx_path: Path
    version_dir: Path
    meta: VersionMeta  # names the task whose preprocessor the worker builds
    items: list[Any]


@dataclass(frozen=True)
class Activate:
    model: str
    version: int
    reference: ReferenceInputs | None  # None when no detector uses the training reference


@dataclass(frozen=True)
class Observe:
    model: str
    version: int
    observations: Observations
    sent: float = 0.0  # Unix time the monitor shipped them (they arrived within FORWARD_INTERVAL)


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Statuses:
    model: str
    statuses: list[DetectorStatus]
    traffic_rate: float = math.nan  # samples per second the budget is computed with


@dataclass(frozen=True)
class ProjectionReady:
    model: str
    version: int
    projection: Projection


@dataclass(frozen=True)
class WorkerOptions:
    drift_dir: Path
    recipes: dict[str, DriftRecipe]
    threads: int = 1
    nice: int = 10
    log_level: str = "INFO"
