"""Which graph a new version serves: its int8 graph when the int8 check passes on held-out rows,
else fp32 (see :class:`~service.domain.int8.Int8Check`). The same rule for every task, for first
versions and fine-tune candidates alike; each task only says how it quantizes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service.domain.int8 import Int8Check
from service.domain.versions import DEFAULT_SERVING_FILE
from service.errors import is_disk_full
from service.runtime import LoadedVersion
from service.training._fitting import Progress

INT8_FILE = "model.int8.onnx"
# Writes the int8 graph of the version's model.onnx at the path it is given and opens it for
# checks (dynamic quantization for text, static QDQ calibrated on images for CNNs).
Quantize = Callable[[Path], LoadedVersion]
# A session's accuracy on the held-out rows the check uses.
Accuracy = Callable[[LoadedVersion], float]


@dataclass(frozen=True)
class HeldOut:
    """The rows the check scores both graphs on: how many, which split, and the scoring."""

    rows: int
    split: str
    accuracy: Accuracy


@dataclass(frozen=True)
class ServedGraph:
    session: LoadedVersion
    file: str  # the version's serving_file
    int8: Int8Check | None  # None: int8 is off for the model


def choose_graph(
    fp32: LoadedVersion,
    directory: Path,
    quantize: Quantize | None,
    held_out: HeldOut,
    max_drop: float,
    log: Progress,
) -> ServedGraph:
    """Quantize the version in ``directory`` (``quantize`` None: int8 is off) and keep the int8
    graph only if it passes the check; otherwise its file is removed and fp32 serves, and the
    log and the check say why."""
    if quantize is None:
        return ServedGraph(fp32, DEFAULT_SERVING_FILE, None)
    path = directory / INT8_FILE
    int8: LoadedVersion | None = None
    try:
        int8 = quantize(path)
        check = Int8Check.measured(
            held_out.accuracy(fp32),
            held_out.accuracy(int8),
            held_out.rows,
            held_out.split,
            max_drop,
        )
    except Exception as exc:  # a graph the quantizer cannot handle: fp32 still serves
        if is_disk_full(exc):
            raise
        check = Int8Check.failed(f"{type(exc).__name__}: {exc}", max_drop)
    log(check.summary())
    if check.accepted and int8 is not None:
        return ServedGraph(int8, INT8_FILE, check)
    if int8 is not None:
        int8.retire()
    path.unlink(missing_ok=True)
    return ServedGraph(fp32, DEFAULT_SERVING_FILE, check)
