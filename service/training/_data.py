"""Labeled texts: splitting, tokenizing and batching for torch."""

from __future__ import annotations

import random
import re
import shutil
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer

from service.config import ModelDefinition
from service.errors import ConfigError


@dataclass(frozen=True)
class Example:
    text: str
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


def label_name_examples(labels: list[str]) -> list[Example]:
    """One training example per label that reads as words: its name, spelled out
    (``card_arrival`` → "card arrival", ``cardArrival`` → "card arrival"). With a few examples per
    class a descriptive name is a cheap extra example (measured on BANKING77, 10 per intent:
    +0.6 points on each of two splits); names without letters teach nothing and are skipped."""
    return [
        Example(_spelled_out(label), index)
        for index, label in enumerate(labels)
        if any(c.isalpha() for c in label)
    ]


def _spelled_out(label: str) -> str:
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", label)
    return " ".join(re.split(r"[\s_\-./:]+", words)).strip().lower()


def copy_tokenizer(backbone: Path, target: Path) -> None:
    """Place the backbone's fast tokenizer at ``target`` (tokenizer.json format)."""
    source = backbone / "tokenizer.json"
    if source.is_file():
        shutil.copyfile(source, target)
        return
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(backbone), use_fast=True)
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"backbone {backbone} has no fast tokenizer; loopserve needs tokenizer.json"
        )
    tokenizer.backend_tokenizer.save(str(target))


class TokenBatcher:
    """Tokenizes with the same tokenizer file and truncation the runtime uses."""

    def __init__(self, tokenizer_file: Path, max_length: int) -> None:
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.enable_truncation(max_length=max_length)
        self._tokenizer.no_padding()

    def ids(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tokenizer.encode_batch(texts, add_special_tokens=True)]

    @staticmethod
    def pad(ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(row) for row in ids)
        input_ids = torch.zeros((len(ids), width), dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return input_ids, mask
