"""What a built image model must pass before it is published: ONNX Runtime sessions on the
exported file with the serving preprocessor, their accuracy on held-out images, and how static
int8 is made (``service.training._int8`` decides whether it serves)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from service.runtime import LoadedVersion
from service.tasks.image import ImageFeeds, ImageOptions
from service.tasks.image.training._quantize import check_quantization, quantize_images
from service.training._checks import check_session
from service.training._int8 import HeldOut, Quantize

CALIBRATION_BATCH = 16
CALIBRATION_IMAGES = 128


def load_for_check(
    path: Path, options: ImageOptions, labels: list[str], threads: int = 0
) -> LoadedVersion:
    """A CPU session as the server would run ``path`` (see ``check_session``)."""
    return check_session(path, ImageFeeds(options), labels, threads)


def predict(session: LoadedVersion, pixels: torch.Tensor) -> npt.NDArray[np.float32]:
    """Probabilities for normalised ``[n, 3, size, size]`` inputs, 64 at a time."""
    if not len(pixels):
        return np.empty((0, len(session.labels)), dtype=np.float32)
    chunks = [
        session.predict(list(pixels[i : i + 64].numpy())).probabilities
        for i in range(0, len(pixels), 64)
    ]
    return np.concatenate(chunks)


def accuracy(session: LoadedVersion, pixels: torch.Tensor, labels: list[int]) -> float:
    if not labels:
        return float("nan")
    predicted = predict(session, pixels).argmax(1)
    return float((predicted == np.asarray(labels)).mean())


def static_int8(
    fp32_path: Path, calibration: torch.Tensor, opened: Callable[[Path], LoadedVersion]
) -> Quantize:
    """How an image version's int8 graph is made: static (QDQ) quantization of ``fp32_path``
    calibrated on training images (dynamic int8 is refused for CNNs), opened by ``opened``.
    Whether it serves is ``choose_graph``'s check on held-out images."""
    check_quantization("static")
    images = calibration[:CALIBRATION_IMAGES].numpy()
    batches = [images[i : i + CALIBRATION_BATCH] for i in range(0, len(images), CALIBRATION_BATCH)]

    def quantize(target: Path) -> LoadedVersion:
        quantize_images(fp32_path, target, batches)
        return opened(target)

    return quantize


def held_out_images(pixels: torch.Tensor, gold: list[int]) -> HeldOut:
    """A first version's int8 check rows: its validation images."""
    return HeldOut(len(gold), "validation", lambda session: accuracy(session, pixels, gold))
