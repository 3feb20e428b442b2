"""Builds the gRPC server: inference and adaptation services, grpc.health.v1, reflection (v1 and
v1alpha) and interceptors."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from service.adaptation.core import AdaptationCore
from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import (
    add_GRPCInferenceServiceServicer_to_server,
)
from service.api._proto.loopserve.v1 import adaptation_pb2
from service.api._proto.loopserve.v1.adaptation_pb2_grpc import add_AdaptationServicer_to_server
from service.api.adaptation_servicer import AdaptationServicer
from service.api.auth import AuthInterceptor
from service.api.interceptors import ObservabilityInterceptor
from service.api.reflection import enable_reflection
from service.api.servicer import InferenceServicer
from service.inference import InferenceService
from service.metrics import Metrics
from service.security import TlsFiles, TokenStore

INFERENCE_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
ADAPTATION_SERVICE = adaptation_pb2.DESCRIPTOR.services_by_name["Adaptation"].full_name
# The largest valid ModelInfer is about 1 MB (64 texts of 16 KB), an AddSamples batch of
# `loopserve label` at most 3 MB. grpcio receives and parses a message on the event loop before any
# of our checks run (a 60 MB one held it for 150-700 ms on 2 cores): the transport refuses larger
# ones (RESOURCE_EXHAUSTED, "larger than max") before they reach Python.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class ServerTls(TlsFiles):
    """TLS of the gRPC port."""

    def credentials(self) -> grpc.ServerCredentials:
        """Read the files now; :class:`~service.errors.ConfigError` names one that is unusable."""
        cert, key, client_ca = self.read()
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
        )


@dataclass
class GrpcServer:
    server: aio.Server
    port: int
    health: health_aio.HealthServicer
    services: tuple[str, ...] = (INFERENCE_SERVICE,)  # reported in health besides ""
    # A plaintext port with health only, for probes that cannot speak TLS (add_health_port).
    health_server: aio.Server | None = None
    health_port: int | None = None

    def add_health_port(self, host: str, port: int) -> int:
        """Bind (before start) a plaintext port that serves ``grpc.health.v1.Health`` only, with
        the same statuses: Kubernetes' gRPC probes and Docker's HEALTHCHECK cannot speak TLS."""
        self.health_server = aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
        self.health_port = _bind(self.health_server, host, port, None, "health port")
        return self.health_port

    async def start(self) -> None:
        await self.server.start()
        if self.health_server is not None:
            await self.health_server.start()

    async def stop(self, grace: float | None) -> None:
        await self.server.stop(grace=grace)
        if self.health_server is not None:
            await self.health_server.stop(grace=None)

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
    *,
    tokens: TokenStore | None = None,
    tls: ServerTls | None = None,
) -> GrpcServer:
    """Create and bind (not start) the server; ``port`` 0 picks a free port.

    The ``loopserve.v1.Adaptation`` service is added (and listed in health and reflection) when
    an ``adaptation`` core is given. With ``tokens`` every call but health needs a bearer token
    with the method's scope (see :mod:`service.api.auth`); without, calls are not authenticated.
    With ``tls`` the port speaks TLS only.
    """
    # Read the TLS files first: an unusable one fails before anything is created.
    credentials = tls.credentials() if tls is not None else None
    auth = AuthInterceptor(tokens) if tokens is not None else None
    # Observability is outermost: it refuses callers that auth does not admit before their
    # request is read, and counts every call with its code. Auth inside sets the principal.
    interceptors: list[aio.ServerInterceptor] = [
        ObservabilityInterceptor(
            metrics, lambda: core.model_names, admit=auth.admit if auth is not None else None
        )
    ]
    if auth is not None:
        interceptors.append(auth)
    server = aio.server(
        interceptors=interceptors,
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
    enable_reflection(
        (*services, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), server
    )
    bound = _bind(server, host, port, credentials)
    return GrpcServer(server, bound, health, tuple(services))


def _bind(
    server: aio.Server,
    host: str,
    port: int,
    credentials: grpc.ServerCredentials | None,
    what: str = "gRPC port",
) -> int:
    address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    if credentials is not None:
        what = f"{what} with TLS (check the certificate and key)"
    try:
        bound = (
            server.add_insecure_port(address)
            if credentials is None
            else server.add_secure_port(address, credentials)
        )
    except RuntimeError as exc:  # grpcio raises here when the port is taken
        raise OSError(f"cannot bind {what} {address}: {exc}") from exc
    if bound == 0:
        raise OSError(f"cannot bind {what} {address}")
    return int(bound)


def add_adaptation_service(core: AdaptationCore, server: aio.Server) -> None:
    """Register ``loopserve.v1.Adaptation`` on ``server`` (before it starts)."""
    add_AdaptationServicer_to_server(AdaptationServicer(core), server)
