"""ONNX export of backbone + head: opset 18, dynamic batch, both outputs, parity with torch."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from service.errors import ConfigError
from service.training import ExportError
from service.training.vision import (
    ImageClassifier,
    build_backbone,
    check_int8,
    export_onnx,
    parity_check,
)
from service.training.vision._export import PARITY_TOLERANCE

SIZE = 32


def _exported(name: str, path: Path) -> ImageClassifier:
    torch.manual_seed(0)
    features, _ = build_backbone(name, trainable_stages=2, width=0.25)
    model = ImageClassifier(features, 3)
    export_onnx(model, path, SIZE)
    return model


def _check(model: ImageClassifier, path: Path) -> None:
    assert parity_check(model, path, SIZE) <= PARITY_TOLERANCE
    graph = onnx.load(str(path))
    assert {o.domain: o.version for o in graph.opset_import}[""] == 18
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixels"]
    for batch in (1, 5):
        pixels = np.random.default_rng(batch).standard_normal((batch, 3, SIZE, SIZE), np.float32)
        probabilities, embedding = session.run(["probabilities", "embedding"], {"pixels": pixels})
        assert probabilities.shape == (batch, 3) and embedding.shape == (batch, model.features.dim)
        np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1, atol=1e-5)


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageClassifier, Path]:
    path = tmp_path_factory.mktemp("lite") / "model.onnx"
    return _exported("efficientnet_lite0", path), path


def test_efficientnet_lite_exports_with_dynamic_batch_and_matches_torch(
    lite: tuple[ImageClassifier, Path],
) -> None:
    _check(*lite)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18", "resnet50"])
def test_every_backbone_exports_and_matches_torch(tmp_path: Path, name: str) -> None:
    path = tmp_path / "model.onnx"
    _check(_exported(name, path), path)


def test_parity_check_refuses_a_graph_that_differs(lite: tuple[ImageClassifier, Path]) -> None:
    model, path = copy.deepcopy(lite[0]), lite[1]
    with torch.no_grad():
        model.head.bias += 5 * torch.tensor([1.0, 0.0, -1.0])
    with pytest.raises(
        ExportError, match=r"ONNX output differs from torch by .* \(tolerance 1e-04\)"
    ):
        parity_check(model, path, SIZE)


def test_dynamic_int8_is_refused_for_image_models() -> None:
    with pytest.raises(
        ConfigError, match=r"int8 is not available for image models.*set int8 = false"
    ):
        check_int8(True)
    check_int8(False)
