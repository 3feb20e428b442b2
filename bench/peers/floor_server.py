"""The transport floor: the least a Python gRPC server can do to answer a V2 ModelInfer.

A bare ``grpc.aio`` server, with no interceptors, auth, metrics, batching or model. It parses
each request (every V2 server must), then answers with one canned response: the serialized
bytes that loopserve gave for a real text, so the answer has the same size. It also answers
ServerReady, and it serves an empty ``/metrics`` page for the bench client's scrapes.

Driven by bench/serving.py's client, its latency and CPU are the cost of gRPC transport plus that
client on this machine: a grpcio server driven by that client pays at least as much.
Usage::

    python -m bench.peers.floor_server --port P --metrics-port M --response FILE
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import grpc
from grpc import aio
from prometheus_client import CollectorRegistry, start_http_server

from service.api._proto.inference import grpc_predict_v2_pb2 as pb

SERVICE = "inference.GRPCInferenceService"


def handlers(response: bytes) -> grpc.GenericRpcHandler:
    """ModelInfer answering ``response`` to any parsable request, and ServerReady."""
    ready = pb.ServerReadyResponse(ready=True)

    async def model_infer(request: pb.ModelInferRequest, context: aio.ServicerContext) -> bytes:
        return response

    async def server_ready(
        request: pb.ServerReadyRequest, context: aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return ready

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "ModelInfer": grpc.unary_unary_rpc_method_handler(
                model_infer,
                request_deserializer=pb.ModelInferRequest.FromString,
                response_serializer=bytes,  # already serialized
            ),
            "ServerReady": grpc.unary_unary_rpc_method_handler(
                server_ready,
                request_deserializer=pb.ServerReadyRequest.FromString,
                response_serializer=pb.ServerReadyResponse.SerializeToString,
            ),
        },
    )


async def serve(port: int, response: bytes) -> None:
    server = aio.server()
    server.add_generic_rpc_handlers((handlers(response),))
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise SystemExit(f"could not bind 127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--response", type=Path, required=True, help="a serialized response")
    args = parser.parse_args(argv)
    response = args.response.read_bytes()
    pb.ModelInferResponse.FromString(response)  # refuse a file that is not one
    start_http_server(args.metrics_port, addr="127.0.0.1", registry=CollectorRegistry())
    asyncio.run(serve(args.port, response))


if __name__ == "__main__":
    main()
