"""What a fine-tune job's training hands to its judging: the candidate and the serving version
as sessions, how the spec's inputs become their items, and what training reported. The judging
(gate, review, calibration, result) is the same for every task."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.calibration import FloatArray
from service.config import TrainRecipe
from service.domain.finetune import FineTuneSpec
from service.domain.versions import Int8Check
from service.runtime import LoadedVersion
from service.training._trainer import TrainReport

# The spec's inputs (texts, or content keys of images) as the sessions' items.
Items = Callable[[Sequence[str]], Sequence[Any]]
CHUNK = 64  # inputs prepared and scored at a time: bounds the memory of decoded images


@dataclass
class Candidate:
    candidate: LoadedVersion
    incumbent: LoadedVersion
    report: TrainReport
    parity: float
    serving_file: str
    int8: Int8Check | None
    items: Items
    # The review's shared-token test reads words: it applies to texts only.
    text_inputs: bool = True

    def predict(self, session: LoadedVersion, inputs: Sequence[str]) -> FloatArray:
        return predict_items(session, inputs, self.items)


def job_recipe(spec: FineTuneSpec) -> TrainRecipe:
    """The fine-tune job's recipe in the trainers' terms."""
    return TrainRecipe(
        seed=spec.recipe.seed,
        finetune_layers=spec.trainable_layers,
        learning_rate=spec.recipe.learning_rate,
        layer_lr_decay=spec.recipe.layer_lr_decay,
        finetune_head_learning_rate=spec.recipe.head_learning_rate,
        epochs=spec.recipe.epochs,
        batch_size=spec.recipe.batch_size,
        patience=spec.recipe.patience,
        balance_classes=spec.recipe.balance_classes,
    )


def same_items(inputs: Sequence[str]) -> Sequence[Any]:
    """Texts are their own items."""
    return inputs


def predict_items(session: LoadedVersion, inputs: Sequence[str], items: Items) -> FloatArray:
    """``session``'s probabilities for the spec's ``inputs``, prepared a chunk at a time."""
    if not inputs:
        return np.empty((0, len(session.labels)), dtype=np.float32)
    chunks = [
        session.predict(items(inputs[i : i + CHUNK])).probabilities
        for i in range(0, len(inputs), CHUNK)
    ]
    return np.concatenate(chunks)
