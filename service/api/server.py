"""Builds the gRPC server: inference and adaptation services, grpc.health.v1, reflection and
interceptors."""

from __future__ import annotations

from dataclasses import dataclass

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from service.adaptation.core import AdaptationCore
from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import (
    add_GRPCInferenceServiceServicer_to_server,
)
from service.api._proto.loopserve.v1 import adaptation_pb2
from service.api._proto.loopserve.v1.adaptation_pb2_grpc import add_AdaptationServicer_to_server
from service.api.adaptation_servicer import AdaptationServicer
from service.api.interceptors import ObservabilityInterceptor
from service.api.servicer import InferenceServicer
from service.inference import InferenceService
from service.metrics import Metrics

INFERENCE_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
ADAPTATION_SERVICE = adaptation_pb2.DESCRIPTOR.services_by_name["Adaptation"].full_name
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@dataclass
class GrpcServer:
    server: aio.Server
    port: int
    health: health_aio.HealthServicer
    services: tuple[str, ...] = (INFERENCE_SERVICE,)  # reported in health besides ""

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", *self.services):
            await self.health.set(service, status)


def build_server(
    core: InferenceService,
    metrics: Metrics,
    host: str,
    port: int,
    adaptation: AdaptationCore | None = None,
) -> GrpcServer:
    """Create and bind (not start) the server; ``port`` 0 picks a free port.

    The ``loopserve.v1.Adaptation`` service is added (and listed in health and reflection) when
    an ``adaptation`` core is given.
    """
    server = aio.server(
        interceptors=[ObservabilityInterceptor(metrics, lambda: core.model_names)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    add_GRPCInferenceServiceServicer_to_server(InferenceServicer(core), server)
    services = [INFERENCE_SERVICE]
    if adaptation is not None:
        add_adaptation_service(adaptation, server)
        services.append(ADAPTATION_SERVICE)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            *services,
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
    return GrpcServer(server, bound, health, tuple(services))


def add_adaptation_service(core: AdaptationCore, server: aio.Server) -> None:
    """Register ``loopserve.v1.Adaptation`` on ``server`` (before it starts)."""
    add_AdaptationServicer_to_server(AdaptationServicer(core), server)
