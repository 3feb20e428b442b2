"""What the server hands a fine-tune job process (as JSON): data, base version, recipe, paths."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Pairs = list[tuple[str, str]]


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
    recipe: dict[str, Any]
    gate: dict[str, Any]
    int8: bool
    int8_max_accuracy_drop: float
    threads: int
    nice: int
    staging_dir: str
    result_path: str
    anchor_held_out: bool = False
    idle_priority: bool = True

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self)), encoding="utf-8")

    @staticmethod
    def load(path: Path) -> FineTuneSpec:
        raw = json.loads(path.read_text(encoding="utf-8"))
        for key in ("train", "validation", "holdout", "anchor"):
            raw[key] = [tuple(pair) for pair in raw[key]]
        return FineTuneSpec(**raw)
