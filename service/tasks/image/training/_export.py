"""An image classifier (backbone features + linear head) to ONNX with torch's dynamo exporter,
and the ONNX Runtime-vs-torch parity check that accepts the file."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from service.tasks.image.training._backbone import SplitFeatures
from service.training._checks import ExportError

OPSET = 18
PARITY_TOLERANCE = 1e-4
INPUT, OUTPUTS = "pixels", ["probabilities", "embedding"]
MAX_BATCH = 1024


class ImageClassifier(nn.Module):
    """Probabilities over the labels and the L2-normalised pooled features (what drift watches)
    of FP32 ``[n, 3, size, size]`` normalised pixels."""

    def __init__(self, features: SplitFeatures, labels: int):
        super().__init__()
        self.features = features
        self.head = nn.Linear(features.dim, labels)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.features(pixels)
        probabilities = torch.softmax(self.head(pooled), dim=-1)
        return probabilities, nn.functional.normalize(pooled, dim=-1)


def export_onnx(model: ImageClassifier, path: Path, size: int) -> None:
    """Write ``model`` as ONNX (opset 18) with a dynamic batch axis."""
    model.eval()
    example = torch.zeros(2, 3, size, size)  # 2, not 1: a batch of 1 would be specialised
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    # The exporter warns that torchvision's detection ops are not registered (torchvision is
    # not installed, and these networks use none of them).
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    program = torch.onnx.export(
        model,
        (example,),
        input_names=[INPUT],
        output_names=OUTPUTS,
        opset_version=OPSET,
        dynamo=True,
        dynamic_shapes={"pixels": {0: batch}},
        verbose=False,
    )
    if program is None:
        raise ExportError("the ONNX exporter produced no program")
    program.save(str(path))


@torch.no_grad()
def parity_check(model: ImageClassifier, path: Path, size: int, batch: int = 3) -> float:
    """Largest absolute difference between torch and ONNX Runtime (CPU) over both outputs on
    random inputs; ExportError when over ``PARITY_TOLERANCE``."""
    model.eval()
    pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    expected = [t.numpy() for t in model(pixels)]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = session.run(OUTPUTS, {INPUT: pixels.numpy()})
    diff = max(float(np.abs(e - g).max()) for e, g in zip(expected, got, strict=True))
    if not diff <= PARITY_TOLERANCE:
        raise ExportError(
            f"ONNX output differs from torch by {diff:.2e} (tolerance {PARITY_TOLERANCE:.0e})"
        )
    return diff
