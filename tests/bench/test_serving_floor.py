"""The serving benchmark's transport floor: the bare server, and the ratios it bounds."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc import aio

from bench.peers.floor_server import handlers
from bench.serving import INFER_METHOD, Phase, VariantResult, floor_bounds
from service.api._proto.inference import grpc_predict_v2_pb2 as pb


def phase(name: str, p50: float, texts_per_s: float, cpu: float, client: float) -> Phase:
    return Phase(name, 100, 100, 1.0, p50, 2 * p50, p50, texts_per_s, cpu, client)


def test_the_floor_answers_every_request_with_the_canned_response() -> None:
    canned = pb.ModelInferResponse(model_name="m", model_version="3").SerializeToString()

    async def scenario() -> tuple[bytes, bool, grpc.StatusCode]:
        server = aio.server()
        server.add_generic_rpc_handlers((handlers(canned),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                infer = channel.unary_unary(INFER_METHOD)
                answer = await infer(pb.ModelInferRequest(model_name="m").SerializeToString())
                ready = await channel.unary_unary(
                    "/inference.GRPCInferenceService/ServerReady",
                    request_serializer=pb.ServerReadyRequest.SerializeToString,
                    response_deserializer=pb.ServerReadyResponse.FromString,
                )(pb.ServerReadyRequest())
                with pytest.raises(aio.AioRpcError) as refused:
                    await infer(b"\xff\xff not a protobuf")
                return bytes(answer), ready.ready, refused.value.code()
        finally:
            await server.stop(None)

    answer, ready, refused = asyncio.run(scenario())

    assert answer == canned
    assert ready is True
    assert refused != grpc.StatusCode.OK  # it parses requests, as any V2 server must


def test_floor_bounds_add_the_floor_to_in_process_inference() -> None:
    result = VariantResult("int8", "model.int8.onnx", 21.8, "built version")
    result.in_process = [
        phase("in-process 1 text", 2.0, 500.0, 2.0, 0.0),
        phase("in-process batch=8", 16.0, 800.0, 2.5, 0.0),
        phase("in-process batch=16", 30.0, 700.0, 2.6, 0.0),
    ]
    result.floor = [
        phase("floor c=1", 0.5, 1800.0, 0.4, 0.3),
        phase("floor c=16", 4.0, 4000.0, 0.3, 0.2),
    ]

    bounds = floor_bounds(result, cores=2)

    assert bounds.p50_ratio == pytest.approx((2.0 + 0.5) / 2.0)
    assert bounds.floor_cpu_ms == pytest.approx(0.5)  # server 0.3 + client 0.2 at c=16
    # 2 cores over (2.5 ms in-process CPU at the best batch + 0.5 ms), against 800 texts/s.
    assert bounds.throughput_ratio == pytest.approx(2000.0 / 3.0 / 800.0)
    assert result.floor_bounds(cores=2) == bounds


def test_no_floor_run_no_bounds() -> None:
    assert VariantResult("fp32", "model.onnx", 86.0, "built version").floor_bounds(2) is None
