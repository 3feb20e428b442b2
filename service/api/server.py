"""Builds the gRPC server: inference service, grpc.health.v1, reflection and interceptors."""

from __future__ import annotations

from dataclasses import dataclass

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import (
    add_GRPCInferenceServiceServicer_to_server,
)
from service.api.interceptors import ObservabilityInterceptor
from service.api.servicer import InferenceServicer
from service.inference import InferenceService
from service.metrics import Metrics

INFERENCE_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass
class GrpcServer:
    server: aio.Server
    port: int
    health: health_aio.HealthServicer

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", INFERENCE_SERVICE):
            await self.health.set(service, status)


def build_server(core: InferenceService, metrics: Metrics, host: str, port: int) -> GrpcServer:
    """Create and bind (not start) the server; ``port`` 0 picks a free port."""
    server = aio.server(
        interceptors=[ObservabilityInterceptor(metrics, lambda: core.model_names)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    add_GRPCInferenceServiceServicer_to_server(InferenceServicer(core), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            INFERENCE_SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:  # grpcio raises here when the port is taken
        raise OSError(f"cannot bind gRPC port {host}:{port}: {exc}") from exc
    if bound == 0:
        raise OSError(f"cannot bind gRPC port {host}:{port}")
    return GrpcServer(server, bound, health)
