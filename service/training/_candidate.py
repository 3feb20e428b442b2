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
from service.runtime import LoadedVersion, Prediction
from service.training._fitting import TrainReport
from service.training._int8 import Quantize

# The spec's inputs (as its pairs name them) as the sessions' items.
Items = Callable[[Sequence[str]], Sequence[Any]]
Pairs = list[tuple[str, str]]  # (input, gold label) rows of the spec
CHUNK = 64  # inputs prepared and scored at a time: bounds the memory of decoded images


@dataclass
class Candidate:
    candidate: LoadedVersion  # the fp32 graph (model.onnx in the staging directory)
    incumbent: LoadedVersion
    report: TrainReport
    parity: float
    # How the task makes the candidate's int8 graph; None when [serving] int8 is off. Whether
    # it serves is the judging's choice (``_int8.choose_graph``), the same for every task.
    quantize: Quantize | None
    items: Items
    # The inputs are words: the review's shared-token tests apply (not to content keys).
    words: bool

    def predict(self, session: LoadedVersion, inputs: Sequence[str]) -> FloatArray:
        return predict_items(session, inputs, self.items)

    def score(self, session: LoadedVersion, inputs: Sequence[str]) -> Prediction:
        """Probabilities and embeddings (the review's embedding-cluster test reads them)."""
        return score_items(session, inputs, self.items)


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
    """Inputs that are their own items (what a request's decoding yields for them)."""
    return inputs


def predict_items(session: LoadedVersion, inputs: Sequence[str], items: Items) -> FloatArray:
    """``session``'s probabilities for the spec's ``inputs``."""
    return score_items(session, inputs, items).probabilities


def score_items(session: LoadedVersion, inputs: Sequence[str], items: Items) -> Prediction:
    """``session``'s probabilities and embeddings for the spec's ``inputs``, prepared a chunk
    at a time."""
    if not inputs:
        return Prediction(
            np.empty((0, len(session.labels)), dtype=np.float32),
            np.empty((0, session.embedding_dim), dtype=np.float32),
        )
    chunks = [session.predict(items(inputs[i : i + CHUNK])) for i in range(0, len(inputs), CHUNK)]
    return Prediction(
        np.concatenate([c.probabilities for c in chunks]),
        np.concatenate([c.embedding for c in chunks]),
    )


def correct_given(labels: list[str], pairs: Pairs, probabilities: FloatArray) -> list[bool]:
    """Per pair, whether the most probable of ``labels`` is its gold label."""
    predicted = [labels[i] for i in probabilities.argmax(1)]
    return [p == gold for p, (_, gold) in zip(predicted, pairs, strict=True)]


def mean_correct(correct: list[bool]) -> float:
    """The share of correct rows; NaN for none."""
    return float(np.mean(correct)) if correct else float("nan")
