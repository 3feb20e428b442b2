"""Graceful stop: admitted requests finish, new ones are refused, health turns NOT_SERVING."""

from __future__ import annotations

import asyncio
import threading

import grpc
import numpy as np
import pytest
from conftest import TINY_MODEL, RunningApp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from waiting import wait_until

from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.runtime import Prediction

HELD = 4


def request() -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=TINY_MODEL)
    message.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
        b"hello"
    )
    return message


def test_stop_drains_admitted_requests_and_refuses_new_ones(server: RunningApp) -> None:
    served = server.app.models[TINY_MODEL]
    gate = threading.Event()
    loaded = served.slot.current
    assert loaded is not None
    real_predict = loaded.predict

    def held_predict(texts: list[str]) -> Prediction:
        assert gate.wait(10)
        return real_predict(texts)

    loaded.predict = held_predict
    channel = grpc.insecure_channel(server.address)
    stub = GRPCInferenceServiceStub(channel)
    admitted = [stub.ModelInfer.future(request(), timeout=30) for _ in range(HELD)]
    in_flight = server.app.metrics.registry.get_sample_value
    wait_until(lambda: in_flight("loopserve_in_flight_requests", {"model": TINY_MODEL}) == HELD)

    stopping = asyncio.run_coroutine_threadsafe(server.app.stop(), server.loop)
    health = health_pb2_grpc.HealthStub(channel)
    serving_status = health_pb2.HealthCheckResponse.SERVING
    wait_until(
        lambda: health.Check(health_pb2.HealthCheckRequest(service="")).status != serving_status
    )
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in (refused.value.details() or "")
    assert not stopping.done()

    gate.set()
    for future in admitted:
        response = future.result(timeout=30)
        probabilities = np.frombuffer(response.raw_output_contents[1], dtype="<f4")
        assert abs(float(probabilities.sum()) - 1.0) < 1e-5
    stopping.result(timeout=30)
    channel.close()
