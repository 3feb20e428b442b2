"""An image model served through the real server: encoded images and preprocessed tensors in,
labels out; metadata that lets a client preprocess; broken images refused per element."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import RunningApp
from tasks.image.hostile_images import solid
from tasks.image.tiny_image_model import publish_version, write_definition

from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.config import ServerSettings
from service.metrics import Metrics

MODEL = "colours"
SIZE = 32
RED, GREEN, BLUE = (230, 20, 20), (20, 230, 20), (20, 20, 230)


@pytest.fixture
def image_server(tmp_path: Path) -> Iterator[RunningApp]:
    models_dir, state_dir = tmp_path / "models", tmp_path / "state"
    write_definition(models_dir, MODEL, SIZE)
    publish_version(state_dir, MODEL, SIZE)
    settings = ServerSettings(
        models=(MODEL,), models_dir=models_dir, state_dir=state_dir, host="127.0.0.1",
        grpc_port=0, metrics_port=0, drain_seconds=2.0,
    )  # fmt: skip
    app = RunningApp(settings, Metrics())
    yield app
    app.stop()


def _request(images: list[bytes]) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=MODEL, id="r1")
    tensor = message.inputs.add(name="image", datatype="BYTES", shape=[len(images)])
    tensor.contents.bytes_contents.extend(images)
    return message


def _labels(response: pb.ModelInferResponse) -> list[str]:
    names = [o.name for o in response.outputs]
    raw = response.raw_output_contents[names.index("label")]
    labels, offset = [], 0
    while offset < len(raw):
        size = int.from_bytes(raw[offset : offset + 4], "little")
        labels.append(raw[offset + 4 : offset + 4 + size].decode())
        offset += 4 + size
    return labels


def test_encoded_images_of_each_allowed_format_are_classified(image_server: RunningApp) -> None:
    images = [
        solid("JPEG", (90, 60), RED),
        solid("PNG", (40, 80), GREEN),
        solid("WEBP", color=BLUE),
    ]
    with grpc.insecure_channel(image_server.address) as channel:
        response = GRPCInferenceServiceStub(channel).ModelInfer(_request(images), timeout=20)
    assert _labels(response) == ["red", "green", "blue"]
    assert response.model_version == "1"


def test_preprocessed_pixels_are_accepted(image_server: RunningApp) -> None:
    pixels = np.zeros((2, SIZE, SIZE, 3), dtype=np.uint8)
    pixels[0, ..., 2] = 220  # blue
    pixels[1, ..., 0] = 220  # red
    message = pb.ModelInferRequest(model_name=MODEL)
    message.inputs.add(name="image", datatype="UINT8", shape=list(pixels.shape))
    message.raw_input_contents.append(pixels.tobytes())
    with grpc.insecure_channel(image_server.address) as channel:
        response = GRPCInferenceServiceStub(channel).ModelInfer(message, timeout=20)
    assert _labels(response) == ["blue", "red"]


def test_a_broken_image_is_invalid_argument_naming_its_element(image_server: RunningApp) -> None:
    good = solid("PNG")
    with grpc.insecure_channel(image_server.address) as channel:
        stub = GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(_request([good, good[:30]]), timeout=20)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith("image[1]: ")
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(_request([good] * 5), timeout=20)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "at most 4" in caught.value.details()
        # The server still answers after the refusals.
        assert _labels(stub.ModelInfer(_request([solid("PNG", color=RED)]), timeout=20)) == ["red"]


def test_metadata_names_the_task_and_the_preprocessing(image_server: RunningApp) -> None:
    with grpc.insecure_channel(image_server.address) as channel:
        stub = GRPCInferenceServiceStub(channel)
        metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL), timeout=10)
    assert [(t.name, t.datatype) for t in metadata.inputs] == [("image", "BYTES")]
    assert {"task", "image_size", "mean", "std"} <= set(metadata.properties)
    assert metadata.properties["task"] == "image-classification"
    assert metadata.properties["image_size"] == str(SIZE)
    assert json.loads(metadata.properties["labels"]) == ["red", "green", "blue"]


def test_a_standard_v2_client_sends_a_jpeg(image_server: RunningApp, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(solid("JPEG", (120, 90), GREEN))
    client = Path(__file__).parents[2] / "triton_client.py"
    out = subprocess.run(
        [sys.executable, str(client), "images", image_server.address, MODEL, str(photo)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert json.loads(out.stdout)["labels"] == ["green"]
