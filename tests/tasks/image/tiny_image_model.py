"""A tiny image classifier built as an ONNX graph directly (no torch), published as a version.

pixels [n, 3, S, S] -> global average pool -> the three channel means, L2-normalised, are the
embedding -> logits = 10 x embedding: a mostly red image is "red", green "green", blue "blue".
Enough to test serving, decoding and the wire without training anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.domain.versions import VersionMeta
from service.registry import ModelRegistry
from service.tasks.image import ONNX_INPUT

COLOURS = ["red", "green", "blue"]


def tiny_image_onnx(path: Path) -> None:
    scale = numpy_helper.from_array(np.array(10.0, dtype=np.float32), "scale")
    nodes = [
        helper.make_node("GlobalAveragePool", [ONNX_INPUT], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["means"], axis=1),
        helper.make_node("ReduceL2", ["means"], ["norm"], keepdims=1, axes=[1]),
        helper.make_node("Div", ["means", "norm"], ["embedding"]),
        helper.make_node("Mul", ["embedding", "scale"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-image",
        [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, ["n", 3, None, None])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 3]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", 3]),
        ],
        [scale],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_definition(
    models_dir: Path, name: str, size: int, drift: str = "detectors = []\n"
) -> None:
    """``drift``: the ``[drift]`` table's body (monitoring off by default)."""
    directory = models_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    labels = ", ".join(f'"{c}"' for c in COLOURS)
    (directory / "model.toml").write_text(
        f'[model]\ntask = "image-classification"\nlabels = [{labels}]\n\n'
        f"[input]\nsize = {size}\nmax_images_per_request = 4\n\n[drift]\n{drift}",
        encoding="utf-8",
    )


def publish_version(state_dir: Path, name: str, size: int) -> None:
    registry = ModelRegistry(state_dir, name)
    with registry.stage(parent=None) as staged:
        tiny_image_onnx(staged.path / "model.onnx")
        inputs = {"size": size, "max_images_per_request": 4}
        meta = VersionMeta(
            labels=tuple(COLOURS), max_seq_length=0, task="image-classification", inputs=inputs
        )
        info = registry.publish(staged, meta)
    registry.set_current(info.version, expected=None)
