"""Server-side tokenization and length grouping (service.tasks.text.TextEncoder)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from conftest import FILLER, KEYWORDS
from tokenizers import Tokenizer

from service.tasks.text._encoder import EncodedGroup, TextEncoder

WORDS = FILLER + [w for words in KEYWORDS.values() for w in words]
SPECIAL_TOKENS = 2  # [CLS] ... [SEP]


def _texts(count: int, max_words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(1, max_words))) for _ in range(count)]


@pytest.fixture(scope="module")
def tokenizer_file(tiny_backbone: Path) -> Path:
    return tiny_backbone / "tokenizer.json"


@pytest.fixture(scope="module")
def reference(tokenizer_file: Path) -> Tokenizer:
    """The same tokenizer without truncation, to know each text's full token ids."""
    return Tokenizer.from_file(str(tokenizer_file))


def _positions(groups: list[EncodedGroup]) -> list[int]:
    return [p for group in groups for p in group.positions]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("pad_slack", [0.0, 0.25, 1.0])
def test_groups_cover_every_position_exactly_once(
    tokenizer_file: Path, seed: int, pad_slack: float
) -> None:
    texts = _texts(37, max_words=20, seed=seed)

    groups = TextEncoder(tokenizer_file, max_length=32).encode(texts, pad_slack=pad_slack)

    positions = _positions(groups)
    assert sorted(positions) == list(range(len(texts)))
    assert len(positions) == len(set(positions))
    assert all(group.positions for group in groups)


def test_duplicate_texts_keep_distinct_positions(tokenizer_file: Path) -> None:
    texts = ["hello there"] * 5 + ["why"] * 3

    groups = TextEncoder(tokenizer_file, max_length=32).encode(texts)

    assert sorted(_positions(groups)) == list(range(8))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("pad_slack", [0.0, 0.1, 0.25, 1.0])
def test_padding_overhead_stays_within_slack(
    tokenizer_file: Path, seed: int, pad_slack: float
) -> None:
    texts = _texts(50, max_words=25, seed=seed)

    groups = TextEncoder(tokenizer_file, max_length=32).encode(texts, pad_slack=pad_slack)

    for group in groups:
        padded = group.input_ids.size
        real = int(group.attention_mask.sum())
        assert padded <= (1 + pad_slack) * real + 1e-9, (
            f"group of {len(group.positions)} pads {real} tokens to {padded}"
        )


def test_zero_slack_groups_only_equal_lengths(tokenizer_file: Path) -> None:
    texts = _texts(40, max_words=6, seed=3)

    groups = TextEncoder(tokenizer_file, max_length=32).encode(texts, pad_slack=0.0)

    for group in groups:
        assert group.attention_mask.all(), "no padding allowed with pad_slack=0"
    lengths = [int(g.attention_mask.sum(axis=1)[0]) for g in groups]
    assert len(lengths) == len(set(lengths)), "equal lengths belong in one group"


def test_similar_lengths_share_one_group(tokenizer_file: Path) -> None:
    texts = ["hello my order", "why is it late", "the team is awful today"]

    groups = TextEncoder(tokenizer_file, max_length=32).encode(texts, pad_slack=0.5)

    assert len(groups) == 1
    assert groups[0].input_ids.shape == (3, 5 + SPECIAL_TOKENS)


def test_very_different_lengths_are_split(tokenizer_file: Path) -> None:
    texts = ["hi", " ".join(["order"] * 25)]

    groups = TextEncoder(tokenizer_file, max_length=32).encode(texts, pad_slack=0.25)

    assert len(groups) == 2
    assert [g.input_ids.shape for g in groups] == [
        (1, 1 + SPECIAL_TOKENS),
        (1, 25 + SPECIAL_TOKENS),
    ]


@pytest.mark.parametrize("max_length", [8, 12, 32])
def test_truncation_to_max_length(
    tokenizer_file: Path, reference: Tokenizer, max_length: int
) -> None:
    long_text = " ".join(["please"] * 100)
    texts = [long_text, "hello", " ".join(["thanks"] * (max_length - SPECIAL_TOKENS))]

    groups = TextEncoder(tokenizer_file, max_length=max_length).encode(texts, pad_slack=10.0)

    by_position = {p: (g, row) for g in groups for row, p in enumerate(g.positions)}
    for group in groups:
        assert group.input_ids.shape[1] <= max_length
    group, row = by_position[0]
    assert int(group.attention_mask[row].sum()) == max_length
    ids = group.input_ids[row].tolist()
    full = reference.encode(long_text).ids
    assert ids[0] == full[0], "truncation keeps [CLS]"
    assert ids[-1] == full[-1], "truncation keeps [SEP]"
    group, row = by_position[2]
    assert int(group.attention_mask[row].sum()) == max_length, "a text that fits is not cut"


@pytest.mark.parametrize("seed", [0, 1])
def test_attention_masks_match_token_counts(
    tokenizer_file: Path, reference: Tokenizer, seed: int
) -> None:
    texts = [*_texts(30, max_words=40, seed=seed), "unknownword another", "HELLO, World!"]
    max_length = 24

    groups = TextEncoder(tokenizer_file, max_length=max_length).encode(texts)

    for group in groups:
        assert group.input_ids.dtype == np.int64
        assert group.attention_mask.dtype == np.int64
        assert group.input_ids.shape == group.attention_mask.shape
        assert group.input_ids.shape[0] == len(group.positions)
        assert group.input_ids.shape[1] == int(group.attention_mask.sum(axis=1).max())
        for row, position in enumerate(group.positions):
            full = reference.encode(texts[position]).ids
            count = min(len(full), max_length)
            mask = group.attention_mask[row]
            assert mask.tolist() == [1] * count + [0] * (len(mask) - count)
            ids = group.input_ids[row]
            if len(full) <= max_length:
                assert ids[:count].tolist() == full
            assert not ids[count:].any(), "padding uses id 0"


def test_empty_batch_gives_no_groups(tokenizer_file: Path) -> None:
    assert TextEncoder(tokenizer_file, max_length=16).encode([]) == []


def test_max_length_is_exposed(tokenizer_file: Path) -> None:
    assert TextEncoder(tokenizer_file, max_length=16).max_length == 16
