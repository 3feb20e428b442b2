"""The outputs every classification task answers with: label, probabilities, embedding.

Turns a batch result into response tensors. Every rejection says what the caller should send
instead.
"""

from __future__ import annotations

import functools
import json

import numpy as np

from service.errors import InvalidInput, quote
from service.runtime import BatchResult
from service.types import Tensor, TensorSpec

LABEL, PROBABILITIES, EMBEDDING = "label", "probabilities", "embedding"
ALL_OUTPUTS = (LABEL, PROBABILITIES, EMBEDDING)
DEFAULT_OUTPUTS = (LABEL, PROBABILITIES)


class ClassifierOutputs:
    def output_specs(self, classes: int, embedding_dim: int) -> list[TensorSpec]:
        return [
            TensorSpec(LABEL, "BYTES", (-1,)),
            TensorSpec(PROBABILITIES, "FP32", (-1, classes)),
            TensorSpec(EMBEDDING, "FP32", (-1, embedding_dim)),
        ]

    def requested_outputs(self, names: list[str]) -> tuple[str, ...]:
        unknown = [n for n in names if n not in ALL_OUTPUTS]
        if unknown:
            raise InvalidInput(
                f"unknown output(s) {quoted_names(unknown)}; this model has "
                f"{', '.join(map(repr, ALL_OUTPUTS))}"
            )
        return tuple(dict.fromkeys(names)) or DEFAULT_OUTPUTS

    def outputs(self, result: BatchResult, wanted: tuple[str, ...]) -> list[Tensor]:
        tensors = []
        for name in wanted:
            if name == LABEL:
                labels = [label.encode() for label in result.predicted]
                tensors.append(Tensor(LABEL, "BYTES", (len(labels),), labels))
            elif name == PROBABILITIES:
                params = {"labels": labels_json(tuple(result.labels))}
                tensors.append(Tensor.from_array(PROBABILITIES, result.probabilities, params))
            else:
                tensors.append(Tensor.from_array(EMBEDDING, np.asarray(result.embedding)))
        return tensors


@functools.lru_cache(maxsize=64)
def labels_json(labels: tuple[str, ...]) -> str:
    """The column order of the probabilities, as JSON: the same for every answer of a version,
    so encoded once (a version has tens of labels, each request would encode them again)."""
    return json.dumps(list(labels))


def quoted_names(names: list[str]) -> str:
    """Up to three caller-given names, each cut short: the message travels in a trailer."""
    shown = ", ".join(quote(name, 40) for name in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")
