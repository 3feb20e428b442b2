"""Labeled texts for torch: label names as extra examples, the backbone's tokenizer placed in a
version, and tokenizing and batching exactly as the runtime does."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch
from tokenizers import Tokenizer

from service.errors import ConfigError
from service.training._data import Example


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
