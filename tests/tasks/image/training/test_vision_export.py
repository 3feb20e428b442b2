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
from service.tasks.image.training import (
    QUANTIZATION_METHODS,
    ImageClassifier,
    build_backbone,
    check_quantization,
    export_onnx,
    parity_check,
    quantize_images,
    top1_agreement,
)
from service.tasks.image.training._export import PARITY_TOLERANCE
from service.training import ExportError

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
    with pytest.raises(ConfigError, match="dynamic int8 is not available for image models"):
        check_quantization("dynamic")
    with pytest.raises(ConfigError, match="unknown quantization 'fp16'; use none or static"):
        check_quantization("fp16")
    for method in QUANTIZATION_METHODS:
        check_quantization(method)


def test_static_int8_quantizes_the_convolutions_and_keeps_fp32_probabilities(
    lite: tuple[ImageClassifier, Path], tmp_path: Path
) -> None:
    fp32, int8 = lite[1], tmp_path / "model.int8.onnx"
    rng = np.random.default_rng(0)
    images = [rng.standard_normal((2, 3, SIZE, SIZE), np.float32) for _ in range(4)]
    quantize_images(fp32, int8, images)
    nodes = onnx.load(str(int8)).graph.node
    dequantized = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    convolutions = [n for n in nodes if n.op_type == "Conv"]
    assert convolutions and all(n.input[1] in dequantized for n in convolutions)
    softmax = next(n for n in nodes if n.op_type == "Softmax")
    producer = next(n for n in nodes if softmax.input[0] in n.output)
    assert producer.op_type != "DequantizeLinear"  # the head and softmax stay FP32
    held_out = rng.standard_normal((8, 3, SIZE, SIZE), np.float32)
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    probabilities, embedding = session.run(["probabilities", "embedding"], {"pixels": held_out})
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)
    assert embedding.shape == (8, lite[0].features.dim)
    assert 0 <= top1_agreement(fp32, int8, held_out) <= 1


def test_static_int8_needs_calibration_images(
    lite: tuple[ImageClassifier, Path], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="static int8 needs calibration images"):
        quantize_images(lite[1], tmp_path / "model.int8.onnx", [])
