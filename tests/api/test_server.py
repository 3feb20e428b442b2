"""The gRPC surface in-process: contract, metadata, health, reflection, error statuses, metrics."""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from conftest import TINY_LABELS, TINY_MODEL, RunningApp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.errors import DeadlineExceeded
from service.types import InferenceRequest, Tensor

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stub(server: RunningApp) -> Iterator[GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(server.address)
    yield GRPCInferenceServiceStub(channel)
    channel.close()


def text_request(
    texts: list[bytes], outputs: tuple[str, ...] = (), **fields: object
) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=TINY_MODEL, **fields)
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
        call()
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
    mutate(request)
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
        # Refused from the declared shape, before the texts are decoded.
        "has shape [65] (65 elements); this model takes at most 64 per request",
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

    async def broken(request: object, deadline: float | None = None) -> object:
        raise RuntimeError("secret stack detail")

    served.infer = broken
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


# --- requests that must not cost everyone else ----------------------------------------------------

# Sends one hostile ModelInfer from its own process (so that building and sending it takes no
# time from this one) and prints the status it got. "raw": 60 MB of raw contents made of
# zero-length elements, the shape declaring ``declared`` of them; "typed": 8 million empty
# bytes_contents (16 MB).
HOSTILE_CLIENT = """
import json, sys, time
import grpc
from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
address, model, kind, declared = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
request = pb.ModelInferRequest(model_name=model, id="hostile")
tensor = request.inputs.add(name="text", datatype="BYTES", shape=[declared])
if kind == "raw":
    request.raw_input_contents.append(b"\\x00\\x00\\x00\\x00" * 15_728_640)
else:
    tensor.contents.bytes_contents.extend([b""] * 8_000_000)
options = [("grpc.max_send_message_length", 100 * 2**20)]
with grpc.insecure_channel(address, options=options) as channel:
    stub = GRPCInferenceServiceStub(channel)
    grpc.channel_ready_future(channel).result(timeout=30)
    print("sending", flush=True)
    started = time.perf_counter()
    try:
        stub.ModelInfer(request, timeout=60)
        outcome = ["OK", ""]
    except grpc.RpcError as exc:
        outcome = [exc.code().name, exc.details()]
print(json.dumps(outcome + [time.perf_counter() - started]), flush=True)
"""
RAW_60MB = 15_728_640 * 4


def latency(stub: GRPCInferenceServiceStub, request: pb.ModelInferRequest) -> float:
    started = time.perf_counter()
    stub.ModelInfer(request, timeout=30)
    return time.perf_counter() - started


def during_hostile_request(server: RunningApp, kind: str, declared: int) -> tuple[str, str, float]:
    """Send the hostile request and normal ones all the while it is on its way and handled:
    (its status code and message, the worst extra latency of a normal request over the
    baseline)."""
    with grpc.insecure_channel(server.address) as channel:
        stub = GRPCInferenceServiceStub(channel)
        normal = text_request([b"hello hi the team"])
        for _ in range(3):
            latency(stub, normal)  # warm up
        baseline = sorted(latency(stub, normal) for _ in range(20))[-2]
        hostile = subprocess.Popen(
            [sys.executable, "-c", HOSTILE_CLIENT, server.address, TINY_MODEL, kind, str(declared)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        assert hostile.stdout is not None
        assert hostile.stdout.readline().strip() == "sending"
        during: list[float] = []
        while hostile.poll() is None:
            during.append(latency(stub, normal))
        code, details, _ = json.loads(hostile.stdout.read())
        assert during, "no normal request overlapped the hostile one"
        return code, details, max(during) - baseline


@pytest.mark.slow  # a 60 MB request from a separate process
@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (
            15_728_640,
            "input 'text' has shape [15728640] (15728640 elements); this model takes at most 64 "
            "per request",
        ),
        (
            1,
            f"raw contents of input 'text' are {RAW_60MB} bytes; at most 1048832 (64 elements of "
            "at most 16384 bytes, each with a 4-byte length prefix)",
        ),
    ],
    ids=["shape-says-15.7M", "shape-says-1"],
)
def test_a_60mb_request_of_empty_elements_is_refused_without_being_decoded(
    start_app: Any, monkeypatch: pytest.MonkeyPatch, declared: int, message: str
) -> None:
    # A transport limit high enough to let the message reach the converter's own bounds.
    monkeypatch.setattr("service.api.server.MAX_MESSAGE_BYTES", 64 * 2**20)
    server: RunningApp = start_app()
    code, details, delay = during_hostile_request(server, "raw", declared)

    assert (code, details) == ("INVALID_ARGUMENT", message)
    # Decoding it held the event loop for 5 s. What is left is grpcio receiving and parsing a
    # 60 MB message on the loop (150-700 ms on 2 cores), which only the transport's message
    # size limit removes: see the next test.
    assert delay < 1.5


@pytest.mark.slow  # a 60 MB request from a separate process
@pytest.mark.parametrize(
    ("kind", "declared"), [("raw", 15_728_640), ("raw", 1), ("typed", 8_000_000)]
)
def test_a_60mb_request_delays_others_by_at_most_100ms(
    server: RunningApp, kind: str, declared: int
) -> None:
    # The default transport limit (4 MiB) refuses a 60 MB message before any of it reaches
    # Python. On 2 cores the hostile client's own work (building and sending 60 MB) competes for
    # CPU with the server: a try that overlapped other load is repeated, up to three times. A
    # server that stalls (5 s before the limit and the bounded decoding) fails every try.
    delays = []
    for _ in range(3):
        code, details, delay = during_hostile_request(server, kind, declared)
        assert code == "RESOURCE_EXHAUSTED" and "larger than max" in details
        delays.append(delay)
        if delay <= 0.1:
            break
    assert min(delays) <= 0.1, delays


@pytest.mark.parametrize(
    ("mutate", "start"),
    [
        (lambda r: setattr(r, "model_name", "m" * 100_000), "model name 'mmm"),
        (lambda r: setattr(r, "id", "i" * 100_000), "request id 'iii"),
        (lambda r: setattr(r.inputs[0], "name", "n" * 100_000), "input name 'nnn"),
        (lambda r: r.outputs.add(name="o" * 100_000), "output name 'ooo"),
    ],
    ids=["model", "id", "input", "output"],
)
def test_a_100kb_name_or_id_is_invalid_argument_with_a_short_message(
    stub: GRPCInferenceServiceStub, mutate: Any, start: str
) -> None:
    request = text_request([b"hello"])
    mutate(request)

    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, timeout=10)

    details = info.value.details() or ""
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, details
    assert (
        details.startswith(start) and "…' (100000 characters) is too long; at most 128" in details
    )
    assert len(details) < 300


def test_a_100kb_model_name_in_metadata_calls_is_invalid_argument(
    stub: GRPCInferenceServiceStub,
) -> None:
    for call in (
        lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="m" * 100_000), timeout=10),
        lambda: stub.ModelReady(pb.ModelReadyRequest(name="m" * 100_000), timeout=10),
    ):
        expect_error(call, grpc.StatusCode.INVALID_ARGUMENT, "model name 'mmm")


def test_a_long_unknown_model_or_version_is_quoted_truncated(
    stub: GRPCInferenceServiceStub,
) -> None:
    request = text_request([b"hello"])
    request.model_name = "x" * 100
    expect_error(
        lambda: stub.ModelInfer(request),
        grpc.StatusCode.NOT_FOUND,
        f"unknown model '{'x' * 80}…' (100 characters); this server serves 'tiny'",
    )
    request = text_request([b"hello"], model_version="9" * 1000)
    expect_error(
        lambda: stub.ModelInfer(request),
        grpc.StatusCode.NOT_FOUND,
        f"version '{'9' * 20}…' (1000 characters) is not served",
    )


def test_the_callers_deadline_reaches_the_batcher(
    server: RunningApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = server.app.models[TINY_MODEL]
    seen: list[float | None] = []
    infer = served.batcher.infer

    async def recording(texts: list[str], deadline: float | None = None) -> Any:
        seen.append(deadline)
        return await infer(texts, deadline)

    monkeypatch.setattr(served.batcher, "infer", recording)
    with grpc.insecure_channel(server.address) as channel:
        stub = GRPCInferenceServiceStub(channel)
        before = time.monotonic()
        stub.ModelInfer(text_request([b"hello"]), timeout=20)
        after = time.monotonic()
        stub.ModelInfer(text_request([b"hello"]))

    with_deadline, without = seen
    # 20 s from when the call was sent, as the server's clock sees it (gRPC rounds up a little).
    assert with_deadline is not None and before + 19 < with_deadline <= after + 20.5
    assert without is None


def test_a_request_already_past_its_deadline_is_not_run(server: RunningApp) -> None:
    served = server.app.models[TINY_MODEL]
    request = InferenceRequest(TINY_MODEL, "", "late", [Tensor("text", "BYTES", (1,), [b"hello"])])

    with pytest.raises(DeadlineExceeded, match="deadline passed"):
        asyncio.run(served.infer(request, time.monotonic() - 0.001))
