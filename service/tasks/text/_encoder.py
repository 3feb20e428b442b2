"""Server-side tokenization with the version's fast tokenizer (Rust ``tokenizers``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from service.runtime import FeedGroup

IntArray = npt.NDArray[np.int64]
WARMUP_TEXTS = ["warm up", "a somewhat longer sentence to warm up the session with"]


@dataclass(frozen=True)
class EncodedGroup:
    """Texts of similar token length padded to a common length, ready for the session."""

    positions: list[int]
    input_ids: IntArray
    attention_mask: IntArray


class TextEncoder:
    """The text task's preprocessor (service.runtime.Preprocessor) for one version."""

    def __init__(self, tokenizer_file: Path, max_length: int) -> None:
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.enable_truncation(max_length=max_length)
        self._tokenizer.no_padding()
        self.max_length = max_length

    def groups(self, items: Sequence[Any]) -> list[FeedGroup]:
        return [
            FeedGroup(g.positions, {"input_ids": g.input_ids, "attention_mask": g.attention_mask})
            for g in self.encode(list(items))
        ]

    def warmup_items(self) -> list[Any]:
        return list(WARMUP_TEXTS)

    def properties(self) -> dict[str, str]:
        return {"max_seq_length": str(self.max_length)}

    def encode(self, texts: list[str], pad_slack: float = 0.25) -> list[EncodedGroup]:
        """Tokenize and split into groups whose padding overhead stays within ``pad_slack``.

        Batching only pays on CPU when the sequences in a batch have similar lengths, so texts
        are sorted by length and cut into runs where ``count * longest <= (1 + slack) * tokens``.
        """
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        ids = [e.ids for e in encodings]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        groups: list[list[int]] = []
        current: list[int] = []
        tokens = 0
        for i in order:
            length = len(ids[i])
            if current and (len(current) + 1) * length > (1 + pad_slack) * (tokens + length):
                groups.append(current)
                current, tokens = [], 0
            current.append(i)
            tokens += length
        if current:
            groups.append(current)
        return [self._pad(group, ids) for group in groups]

    @staticmethod
    def _pad(positions: list[int], ids: list[list[int]]) -> EncodedGroup:
        width = max(len(ids[i]) for i in positions)
        input_ids = np.zeros((len(positions), width), dtype=np.int64)
        mask = np.zeros((len(positions), width), dtype=np.int64)
        for row, i in enumerate(positions):
            n = len(ids[i])
            input_ids[row, :n] = ids[i]
            mask[row, :n] = 1
        return EncodedGroup(positions, input_ids, mask)
