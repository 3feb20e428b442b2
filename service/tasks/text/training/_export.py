"""A text classifier to ONNX, the ORT-vs-torch parity check, and int8 dynamic quantization."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from service.runtime import LoadedVersion
from service.tasks.text import TextEncoder
from service.tasks.text.training._model import ExportWrapper, TextClassifier
from service.tasks.text.training._tokens import TokenBatcher
from service.training._checks import ExportError, check_session
from service.training._int8 import Quantize

OPSET = 17
PARITY_TOLERANCE = 1e-3


def export_onnx(model: TextClassifier, tokens: TokenBatcher, path: Path) -> None:
    model.eval()
    sample = tokens.ids(["an example sentence for tracing", "short"])
    input_ids, mask = TokenBatcher.pad(sample)
    batch, sequence = "batch", "sequence"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ExportWrapper(model),
            (input_ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["probabilities", "embedding"],
            dynamic_axes={
                "input_ids": {0: batch, 1: sequence},
                "attention_mask": {0: batch, 1: sequence},
                "probabilities": {0: batch},
                "embedding": {0: batch},
            },
            opset_version=OPSET,
            dynamo=False,
        )


def load_for_check(
    onnx_path: Path, tokenizer_path: Path, labels: list[str], max_length: int, threads: int = 0
) -> LoadedVersion:
    """A CPU session for checks (see ``check_session``)."""
    encoder = TextEncoder(tokenizer_path, max_length)
    return check_session(onnx_path, encoder, labels, threads)


@torch.no_grad()
def parity_check(
    model: TextClassifier, tokens: TokenBatcher, session: LoadedVersion, texts: list[str]
) -> float:
    """Largest absolute difference between torch and ORT probabilities; raises if out of tolerance."""
    model.eval()
    torch_probs = []
    for text in texts:  # one at a time: no padding, so torch and ORT see identical inputs
        logits, _ = model(*TokenBatcher.pad(tokens.ids([text])))
        torch_probs.append(torch.softmax(logits, -1)[0].numpy())
    expected = np.stack(torch_probs)
    got = session.predict(texts).probabilities
    diff = float(np.abs(expected - got).max())
    if diff > PARITY_TOLERANCE or (expected.argmax(1) != got.argmax(1)).any():
        raise ExportError(
            f"ONNX output differs from torch by {diff:.2e} (tolerance {PARITY_TOLERANCE:.0e})"
        )
    return diff


def accuracy(session: LoadedVersion, texts: list[str], labels: list[int]) -> float:
    if not texts:
        return float("nan")
    predicted = session.predict(texts).probabilities.argmax(1)
    return float((predicted == np.asarray(labels)).mean())


def quantize_int8(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_hint():
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)


def int8_quantizer(
    onnx_path: Path, tokenizer_path: Path, labels: list[str], max_length: int, threads: int = 0
) -> Quantize:
    """How a text version's int8 graph is made: dynamic quantization of ``onnx_path`` (int8
    weights, activations quantized per batch), opened for checks."""

    def quantize(target: Path) -> LoadedVersion:
        quantize_int8(onnx_path, target)
        return load_for_check(target, tokenizer_path, labels, max_length, threads)

    return quantize


@contextlib.contextmanager
def _quiet_hint() -> Iterator[None]:
    """Without the quantizer's root-logger hint to pre-process the graph first (shape
    inference and fusions that change nothing for a transformer exported by torch): it would
    read as a problem in every build's output."""
    hint = _DropMessage("consider to run pre-processing before quantization")
    root = logging.getLogger()
    root.addFilter(hint)
    try:
        yield
    finally:
        root.removeFilter(hint)


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self._text not in record.getMessage()
