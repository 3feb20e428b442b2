"""The training recipe on the tiny backbone: what validation chooses, and the refit on all rows."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from conftest import FILLER, TINY_LABELS

from service.config import TrainRecipe
from service.tasks.text.training._model import TextClassifier, load_encoder
from service.tasks.text.training._tokens import TokenBatcher, label_name_examples
from service.tasks.text.training._trainer import Trainer
from service.training._data import Example
from service.training._fitting import class_weights

# Train and validation teach the same labels through different words, so a model can know the
# validation split's words only by training on it.
TRAIN_WORDS = {"greeting": "hello", "complaint": "broken", "question": "how"}
VAL_WORDS = {"greeting": "welcome", "complaint": "awful", "question": "where"}
RECIPE = TrainRecipe(
    head_epochs=80, head_learning_rate=0.05, finetune_layers=1, epochs=3, learning_rate=1e-3,
    batch_size=8, patience=3, refit=False,
)  # fmt: skip


def examples(words: dict[str, str], count: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = TINY_LABELS[i % len(TINY_LABELS)]
        tokens = [words[label], *rng.sample(FILLER, 3)]
        rng.shuffle(tokens)
        rows.append(Example(" ".join(tokens), i % len(TINY_LABELS)))
    return rows


def fit(backbone: Path, recipe: TrainRecipe) -> tuple[TextClassifier, TokenBatcher, object]:
    torch.manual_seed(0)
    tokens = TokenBatcher(backbone / "tokenizer.json", 32)
    model = TextClassifier(load_encoder(backbone), len(TINY_LABELS), "mean")
    report = Trainer(model, tokens, recipe, lambda _: None).fit(
        examples(TRAIN_WORDS, 30, seed=0), examples(VAL_WORDS, 30, seed=1)
    )
    return model, tokens, report


def accuracy(model: TextClassifier, tokens: TokenBatcher, rows: list[Example]) -> float:
    with torch.no_grad():
        logits, _ = model(*TokenBatcher.pad(tokens.ids([e.item for e in rows])))
    return float((logits.argmax(1) == torch.tensor([e.label for e in rows])).float().mean())


@pytest.mark.slow
def test_refit_trains_the_chosen_epochs_on_validation_rows_too(tiny_backbone: Path) -> None:
    unseen_phrasing = examples(VAL_WORDS, 30, seed=2)
    kept, tokens, kept_report = fit(tiny_backbone, RECIPE)
    refit, _, report = fit(tiny_backbone, TrainRecipe(**{**vars(RECIPE), "refit": True}))
    assert kept_report.refit_examples == 0
    assert report.refit_examples == 60
    assert 1 <= report.head_epochs <= RECIPE.head_epochs
    # Calibrated before the refit, on rows the selected model had not trained on.
    chosen = report.finetuned if report.used_finetune else report.head_only
    assert report.calibration.rows == 30
    assert report.calibration.accuracy == pytest.approx(chosen["accuracy"])
    learned, missed = (
        accuracy(refit, tokens, unseen_phrasing),
        accuracy(kept, tokens, unseen_phrasing),
    )
    assert learned >= 0.8 and missed <= learned - 0.3


def test_refit_is_off_without_a_validation_split(tiny_backbone: Path) -> None:
    torch.manual_seed(0)
    tokens = TokenBatcher(tiny_backbone / "tokenizer.json", 32)
    model = TextClassifier(load_encoder(tiny_backbone), len(TINY_LABELS), "mean")
    recipe = TrainRecipe(**{**vars(RECIPE), "refit": True, "epochs": 0})
    report = Trainer(model, tokens, recipe, lambda _: None).fit(
        examples(TRAIN_WORDS, 30, seed=0), []
    )
    assert report.refit_examples == 0 and report.head_epochs == RECIPE.head_epochs
    assert report.calibration is not None
    assert (report.calibration.temperature, report.calibration.rows) == (1.0, 0)
    assert report.calibration.source == "none"


@pytest.mark.parametrize(
    ("label", "text"),
    [
        ("card_arrival", "card arrival"),
        ("lost-or-stolen.card", "lost or stolen card"),
        ("cardArrival", "card arrival"),
        ("Top Up", "top up"),
    ],
)
def test_a_label_name_is_spelled_out_as_one_example(label: str, text: str) -> None:
    assert label_name_examples(["0", label]) == [Example(text, 1)]


def test_class_weights_undo_the_label_mix() -> None:
    labels = torch.tensor([0, 0, 0, 1, 2, 2])  # class 3 absent
    weights = class_weights(labels, 4)
    assert weights.tolist() == pytest.approx([2 / 3, 2.0, 1.0, 1.0])
    # every present class carries the same total weight
    totals = [float(weights[c] * (labels == c).sum()) for c in range(3)]
    assert totals == pytest.approx([2.0, 2.0, 2.0])
