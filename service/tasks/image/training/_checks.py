"""What a built image model must pass before it is published: ONNX Runtime sessions on the
exported file with the serving preprocessor, their accuracy on held-out images, and static int8
kept only when its accuracy holds up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from service.domain.versions import Int8Check
from service.runtime import LoadedVersion
from service.tasks.image import ImageFeeds, ImageOptions
from service.tasks.image.training._quantize import check_quantization, quantize_images
from service.training._checks import check_session

INT8_FILE = "model.int8.onnx"
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
    fp32: LoadedVersion,
    directory: Path,
    calibration: torch.Tensor,
    validation: tuple[torch.Tensor, list[int]],
    max_drop: float,
    opened: Callable[[Path], LoadedVersion],
) -> tuple[LoadedVersion, str, Int8Check]:
    """Static (QDQ) int8 calibrated on training images, served only when its accuracy on the
    validation images is within ``max_drop`` of fp32 (dynamic int8 is refused for CNNs).
    Returns the session to serve, its file name and the check."""
    check_quantization("static")
    images = calibration[:CALIBRATION_IMAGES].numpy()
    batches = [images[i : i + CALIBRATION_BATCH] for i in range(0, len(images), CALIBRATION_BATCH)]
    path = directory / INT8_FILE
    quantize_images(directory / "model.onnx", path, batches)
    int8 = opened(path)
    pixels, gold = validation
    fp32_acc, int8_acc = accuracy(fp32, pixels, gold), accuracy(int8, pixels, gold)
    # Without validation images there is no evidence that int8 holds up: fp32 then.
    accepted = bool(gold) and fp32_acc - int8_acc <= max_drop
    check = Int8Check(fp32_accuracy=fp32_acc, int8_accuracy=int8_acc, accepted=accepted)
    if accepted:
        return int8, INT8_FILE, check
    path.unlink()
    return fp32, "model.onnx", check
