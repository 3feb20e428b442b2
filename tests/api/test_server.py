"""The gRPC surface in-process: contract, metadata, health, reflection, error statuses, metrics."""

from __future__ import annotations

import json
import struct
import urllib.request
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from conftest import TINY_LABELS, TINY_MODEL, RunningApp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub


@pytest.fixture
def stub(server: RunningApp) -> Iterator[GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(server.address)
    yield GRPCInferenceServiceStub(channel)
    channel.close()


def text_request(
    texts: list[bytes], outputs: tuple[str, ...] = (), **fields: object
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=TINY_MODEL, **fields)  # type: ignore[arg-type]
    tensor = request.inputs.add(name="text", datatype="BYTES", shape=[len(texts)])
    tensor.contents.bytes_contents.extend(texts)
    for name in outputs:
        request.outputs.add(name=name)
    return request


def outputs_of(
    response: pb.ModelInferResponse,
) -> dict[str, tuple[pb.ModelInferResponse.InferOutputTensor, bytes]]:
    return {
        o.name: (o, raw)
        for o, raw in zip(response.outputs, response.raw_output_contents, strict=True)
    }


def decode_bytes(raw: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        (n,) = struct.unpack_from("<I", raw, offset)
        items.append(raw[offset + 4 : offset + 4 + n])
        offset += 4 + n
    return items


def expect_error(call: object, code: grpc.StatusCode, message: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    assert info.value.code() == code, info.value.details()
    assert message in (info.value.details() or ""), info.value.details()


def test_infer_returns_label_and_probabilities(stub: GRPCInferenceServiceStub) -> None:
    response = stub.ModelInfer(
        text_request([b"hello hi the team", b"why is my order late"], id="req-7")
    )
    assert response.id == "req-7"
    assert response.model_name == TINY_MODEL and response.model_version == "1"
    outputs = outputs_of(response)
    assert set(outputs) == {"label", "probabilities"}
    label_tensor, label_raw = outputs["label"]
    assert label_tensor.datatype == "BYTES" and list(label_tensor.shape) == [2]
    assert all(label.decode() in TINY_LABELS for label in decode_bytes(label_raw))
    probs_tensor, probs_raw = outputs["probabilities"]
    probs = np.frombuffer(probs_raw, dtype="<f4").reshape(2, len(TINY_LABELS))
    assert list(probs_tensor.shape) == [2, 3] and probs_tensor.datatype == "FP32"
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert json.loads(probs_tensor.parameters["labels"].string_param) == TINY_LABELS
    winners = [TINY_LABELS[i] for i in probs.argmax(1)]
    assert winners == [x.decode() for x in decode_bytes(label_raw)]


def test_raw_input_contents_are_accepted(stub: GRPCInferenceServiceStub) -> None:
    request = pb.ModelInferRequest(model_name=TINY_MODEL)
    request.inputs.add(name="text", datatype="BYTES", shape=[2, 1])
    request.raw_input_contents.append(
        b"".join(struct.pack("<I", len(t)) + t for t in (b"hello", b"what now"))
    )
    response = stub.ModelInfer(request)
    assert list(outputs_of(response)["label"][0].shape) == [2]


def test_embedding_only_when_requested(stub: GRPCInferenceServiceStub) -> None:
    response = stub.ModelInfer(text_request([b"hello"], outputs=("embedding",)))
    outputs = outputs_of(response)
    assert set(outputs) == {"embedding"}
    assert list(outputs["embedding"][0].shape) == [1, 32]
    embedding = np.frombuffer(outputs["embedding"][1], dtype="<f4")
    assert abs(float(np.linalg.norm(embedding)) - 1.0) < 1e-4


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda r: setattr(r.inputs[0], "name", "sentence"),
            "got input tensor(s) 'sentence'; send one input tensor named 'text'",
        ),
        (
            lambda r: setattr(r.inputs[0], "datatype", "FP32"),
            "is declared FP32 but its data is in bytes_contents",
        ),
        (
            lambda r: r.inputs[0].shape.__setitem__(0, 3),
            "has shape [3] (3 elements) but 1 elements of data",
        ),
        (
            lambda r: r.inputs[0].shape.append(2),
            "has shape [1, 2] (2 elements) but 1 elements of data",
        ),
        (lambda r: r.outputs.add(name="logits"), "unknown output(s) 'logits'"),
        (
            lambda r: r.inputs.add(name="extra", datatype="BYTES", shape=[0]),
            "send one input tensor named 'text'",
        ),
    ],
)
def test_malformed_requests_are_invalid_argument(
    stub: GRPCInferenceServiceStub, mutate: object, message: str
) -> None:
    request = text_request([b"hello"])
    mutate(request)  # type: ignore[operator]
    expect_error(lambda: stub.ModelInfer(request), grpc.StatusCode.INVALID_ARGUMENT, message)


def test_no_texts_is_invalid_argument(stub: GRPCInferenceServiceStub) -> None:
    expect_error(
        lambda: stub.ModelInfer(text_request([])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "holds no texts",
    )


def test_blank_and_non_utf8_texts_are_invalid_argument(stub: GRPCInferenceServiceStub) -> None:
    expect_error(
        lambda: stub.ModelInfer(text_request([b"ok", b"   "])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "text[1] is empty",
    )
    expect_error(
        lambda: stub.ModelInfer(text_request([b"\xff\xfe"])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "text[0] is not valid UTF-8",
    )


def test_oversized_requests_are_invalid_argument(stub: GRPCInferenceServiceStub) -> None:
    too_many = [b"hello"] * 65
    expect_error(
        lambda: stub.ModelInfer(text_request(too_many)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "65 texts; at most 64",
    )
    too_long = [b"x" * 16_385]
    expect_error(
        lambda: stub.ModelInfer(text_request(too_long)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "16385 bytes; at most 16384",
    )


def test_unknown_model_and_version_are_not_found(stub: GRPCInferenceServiceStub) -> None:
    request = text_request([b"hello"])
    request.model_name = "nope"
    expect_error(
        lambda: stub.ModelInfer(request),
        grpc.StatusCode.NOT_FOUND,
        "unknown model 'nope'; this server serves 'tiny'",
    )
    request = text_request([b"hello"], model_version="7")
    expect_error(
        lambda: stub.ModelInfer(request),
        grpc.StatusCode.NOT_FOUND,
        "version '7' is not served; serving version 1",
    )
    expect_error(
        lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="nope")),
        grpc.StatusCode.NOT_FOUND,
        "unknown model 'nope'",
    )
    expect_error(
        lambda: stub.ModelReady(pb.ModelReadyRequest(name="nope")),
        grpc.StatusCode.NOT_FOUND,
        "unknown model",
    )


def test_explicit_current_version_is_served(stub: GRPCInferenceServiceStub) -> None:
    assert stub.ModelInfer(text_request([b"hello"], model_version="1")).model_version == "1"


def test_bugs_are_internal_without_details(
    server: RunningApp, stub: GRPCInferenceServiceStub
) -> None:
    served = server.app.models[TINY_MODEL]

    async def broken(request: object) -> object:
        raise RuntimeError("secret stack detail")

    served.infer = broken  # type: ignore[method-assign]
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(text_request([b"hello"]))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (info.value.details() or "")
    assert "internal error" in (info.value.details() or "")


def test_metadata_describes_the_contract(stub: GRPCInferenceServiceStub) -> None:
    metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name=TINY_MODEL))
    assert metadata.platform == "onnxruntime_onnx" and list(metadata.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("text", "BYTES", [-1])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [
        ("label", "BYTES", [-1]),
        ("probabilities", "FP32", [-1, 3]),
        ("embedding", "FP32", [-1, 32]),
    ]
    assert json.loads(metadata.properties["labels"]) == TINY_LABELS
    server_meta = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert server_meta.name == "loopserve"


def test_liveness_readiness_and_health(server: RunningApp, stub: GRPCInferenceServiceStub) -> None:
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name=TINY_MODEL)).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name=TINY_MODEL, version="9")).ready
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(server: RunningApp) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(server.address) as channel:
        responses = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names


def test_metrics_count_requests_by_model_version_and_code(
    server: RunningApp, stub: GRPCInferenceServiceStub
) -> None:
    stub.ModelInfer(text_request([b"hello", b"hi"]))
    with pytest.raises(grpc.RpcError):
        stub.ModelInfer(text_request([]))
    request = text_request([b"hello"])
    request.model_name = "nope"
    with pytest.raises(grpc.RpcError):
        stub.ModelInfer(request)
    url = f"http://127.0.0.1:{server.app.metrics_port}/metrics"
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    assert 'loopserve_requests_total{code="OK",model="tiny",version="1"} 1.0' in body
    assert 'loopserve_requests_total{code="INVALID_ARGUMENT",model="tiny",version=""} 1.0' in body
    assert 'loopserve_requests_total{code="NOT_FOUND",model="_unknown",version=""} 1.0' in body
    assert 'loopserve_model_version{model="tiny"} 1.0' in body
    assert 'loopserve_batch_size_sum{model="tiny"} 2.0' in body
    assert 'loopserve_in_flight_requests{model="tiny"} 0.0' in body
    assert 'loopserve_request_duration_seconds_count{model="tiny"} 2.0' in body  # rejected ones too
    for name in ("loopserve_queue_duration_seconds", "loopserve_inference_duration_seconds"):
        assert f'{name}_count{{model="tiny"}} 1.0' in body
