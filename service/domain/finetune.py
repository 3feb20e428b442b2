"""What the server hands a fine-tune job process (``spec.json``) and what it hands back
(``result.json``): typed both ways, so neither side rebuilds the other's data from string keys."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.domain import _records as records
from service.domain.gate import GateThresholds
from service.domain.int8 import Int8Check
from service.domain.loop import GateResult
from service.domain.review import ReviewEvidence
from service.domain.versions import (
    DEFAULT_SERVING_FILE,
    DEFAULT_TASK,
    Calibration,
    DataCounts,
    TrainingRecord,
)

Pairs = list[tuple[str, str]]


@dataclass(frozen=True)
class FineTuneRecipe:
    """How the job trains: the part of a model's adaptation recipe the job process needs."""

    seed: int = 0
    learning_rate: float = 2e-5
    layer_lr_decay: float = 0.9
    head_learning_rate: float = 1e-3
    epochs: int = 4
    batch_size: int = 16
    patience: int = 2
    balance_classes: bool = True


@dataclass
class FineTuneSpec:
    model: str
    backbone: str
    pooling: str
    max_seq_length: int
    base_version: int
    base_dir: str
    base_serving_file: str
    base_labels: list[str]
    labels: list[str]
    trainable_layers: int
    train: Pairs
    validation: Pairs
    holdout: Pairs
    anchor: Pairs
    recipe: FineTuneRecipe
    gate: GateThresholds
    int8: bool
    int8_max_accuracy_drop: float
    threads: int
    nice: int
    staging_dir: str
    result_path: str
    anchor_held_out: bool = False
    idle_priority: bool = True
    # The review's material: the round's new samples as (text, label, source), recent served
    # inputs to compare the two models on, and whether every source of the round is trusted.
    round_samples: list[tuple[str, str, str]] = field(default_factory=list)
    traffic: list[str] = field(default_factory=list)
    trusted: bool = False
    # The model's task (service.tasks). For a task whose inputs are bytes (images), the pairs
    # hold content keys ``sha256:<hex>``, and each one's bytes are in ``inputs_dir/<hex>``.
    task: str = DEFAULT_TASK
    inputs_dir: str = ""
    # Image tasks: the training images' augmentations and views per image ([train] augment).
    augment: list[str] = field(default_factory=list)
    augment_views: int = 0

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(records.unstructure(self)), encoding="utf-8")

    @staticmethod
    def load(path: Path) -> FineTuneSpec:
        return records.structure(json.loads(path.read_text(encoding="utf-8")), FineTuneSpec)


@dataclass(frozen=True)
class FineTuneResult:
    """The job's outcome. ``ok`` False carries ``error`` (and a traceback when it raised)."""

    ok: bool
    error: str = ""
    traceback: str = ""
    gate: GateResult | None = None
    serving_file: str = DEFAULT_SERVING_FILE
    labels: list[str] = field(default_factory=list)
    train: TrainingRecord = field(default_factory=TrainingRecord)
    parity_max_abs_diff: float = 0.0
    int8: Int8Check | None = None
    calibration: Calibration | None = None
    data: DataCounts = field(default_factory=DataCounts)
    seconds: float = 0.0
    review: ReviewEvidence | None = None
    disk_full: bool = False  # it failed because the disk (or a quota) was full

    @staticmethod
    def failed(error: str, traceback: str = "", disk_full: bool = False) -> FineTuneResult:
        return FineTuneResult(ok=False, error=error, traceback=traceback, disk_full=disk_full)

    def save(self, path: Path) -> None:
        """Written with a rename, so the server never reads half a result."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(records.unstructure(self), indent=2), encoding="utf-8")
        os.replace(tmp, path)

    @staticmethod
    def load(path: Path) -> FineTuneResult | None:
        """The result in ``path``; None when the process wrote none (it died first)."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return FineTuneResult.from_dict(raw)

    @staticmethod
    def from_dict(raw: Mapping[str, Any]) -> FineTuneResult:
        # A result without "ok" is a failure; an empty serving file is the default one.
        given = {k: v for k, v in raw.items() if v or k != "serving_file"}
        return records.structure({"ok": False, **given}, FineTuneResult)
