"""Labeled examples of any task: the split into training and validation rows, and the label set
the seed data may use."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from service.config import ModelDefinition
from service.errors import ConfigError


@dataclass(frozen=True)
class Example:
    """One labeled row: ``item`` is its input as the task keeps it (a text, or the key of a row
    of the task's own arrays, such as a decoded image's index), ``label`` its label's index."""

    item: str
    label: int


def stratified_split(
    examples: list[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Hold out ``fraction`` of each class (at least one when the class has two or more)."""
    by_label: dict[int, list[Example]] = defaultdict(list)
    for example in examples:
        by_label[example.label].append(example)
    rng = random.Random(seed)
    train, held_out = [], []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        count = round(len(group) * fraction) if len(group) > 1 else 0
        count = max(count, 1) if len(group) > 1 else 0
        held_out.extend(group[:count])
        train.extend(group[count:])
    rng.shuffle(train)
    return train, held_out


def seed_labels(definition: ModelDefinition, found: Iterable[str]) -> list[str]:
    """model.toml's labels, else the seed's sorted; ConfigError for a seed label not in them."""
    seen = set(found)
    labels = list(definition.labels) or sorted(seen)
    unknown = sorted(seen - set(labels))
    if unknown:
        raise ConfigError(
            f"{definition.seed_path}: labels {unknown} are not in model.toml's labels"
        )
    return labels
