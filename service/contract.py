"""The ModelInfer contract of a text classifier: one BYTES input, label/probabilities/embedding out.

Turns validated request tensors into texts and batch results into response tensors. Every
rejection says what the caller should send instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from service.errors import InvalidInput, quote
from service.runtime import BatchResult
from service.types import Tensor, TensorSpec

INPUT = "text"
LABEL, PROBABILITIES, EMBEDDING = "label", "probabilities", "embedding"
ALL_OUTPUTS = (LABEL, PROBABILITIES, EMBEDDING)
DEFAULT_OUTPUTS = (LABEL, PROBABILITIES)
INPUT_HINT = f"send one input tensor named {INPUT!r}, datatype BYTES, shape [n] of UTF-8 texts"


@dataclass(frozen=True)
class TextLimits:
    max_texts: int
    max_text_bytes: int


class TextClassifierContract:
    def __init__(self, limits: TextLimits) -> None:
        self.limits = limits

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec(INPUT, "BYTES", (-1,))]

    def output_specs(self, classes: int, embedding_dim: int) -> list[TensorSpec]:
        return [
            TensorSpec(LABEL, "BYTES", (-1,)),
            TensorSpec(PROBABILITIES, "FP32", (-1, classes)),
            TensorSpec(EMBEDDING, "FP32", (-1, embedding_dim)),
        ]

    def texts(self, inputs: list[Tensor]) -> list[str]:
        if len(inputs) != 1 or inputs[0].name != INPUT:
            names = ", ".join(quote(t.name, 40) for t in inputs[:3]) or "none"
            if len(inputs) > 3:
                names += f" and {len(inputs) - 3} more"
            raise InvalidInput(f"got input tensor(s) {names}; {INPUT_HINT}")
        tensor = inputs[0]
        if tensor.datatype != "BYTES" or not isinstance(tensor.data, list):
            raise InvalidInput(f"input {INPUT!r} has datatype {tensor.datatype}; {INPUT_HINT}")
        if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise InvalidInput(f"input {INPUT!r} has shape {list(tensor.shape)}; {INPUT_HINT}")
        count = len(tensor.data)
        if count == 0:
            raise InvalidInput(f"input {INPUT!r} holds no texts; {INPUT_HINT} with n >= 1")
        if count > self.limits.max_texts:
            raise InvalidInput(
                f"input {INPUT!r} holds {count} texts; at most {self.limits.max_texts} per request"
            )
        return [self._text(i, raw) for i, raw in enumerate(tensor.data)]

    def _text(self, index: int, raw: bytes) -> str:
        if len(raw) > self.limits.max_text_bytes:
            raise InvalidInput(
                f"text[{index}] is {len(raw)} bytes; at most {self.limits.max_text_bytes} per text"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"text[{index}] is not valid UTF-8") from None
        if not text.strip():
            raise InvalidInput(f"text[{index}] is empty; send non-blank texts")
        return text

    def requested_outputs(self, names: list[str]) -> tuple[str, ...]:
        unknown = [n for n in names if n not in ALL_OUTPUTS]
        if unknown:
            raise InvalidInput(
                f"unknown output(s) {_names(unknown)}; this model has "
                f"{', '.join(map(repr, ALL_OUTPUTS))}"
            )
        return tuple(dict.fromkeys(names)) or DEFAULT_OUTPUTS

    def outputs(self, result: BatchResult, wanted: tuple[str, ...]) -> list[Tensor]:
        tensors = []
        for name in wanted:
            if name == LABEL:
                winners = result.probabilities.argmax(axis=1)
                labels = [result.labels[i].encode() for i in winners]
                tensors.append(Tensor(LABEL, "BYTES", (len(labels),), labels))
            elif name == PROBABILITIES:
                params = {"labels": json.dumps(result.labels)}
                tensors.append(Tensor.from_array(PROBABILITIES, result.probabilities, params))
            else:
                tensors.append(Tensor.from_array(EMBEDDING, np.asarray(result.embedding)))
        return tensors


def _names(names: list[str]) -> str:
    """Up to three caller-given names, each cut short: the message travels in a trailer."""
    shown = ", ".join(quote(name, 40) for name in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")
