"""``inference.GRPCInferenceService``: each method converts in, calls the core, converts out."""

from __future__ import annotations

import time

from grpc import aio

from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceServicer
from service.api.converters import (
    DecodeLimits,
    ModelInferRequestConverter,
    ModelInferResponseConverter,
    ModelMetadataResponseConverter,
    ServerMetadataResponseConverter,
)
from service.inference import InferenceService


class InferenceServicer(GRPCInferenceServiceServicer):
    def __init__(self, core: InferenceService) -> None:
        self._core = core

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._core.live())

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._core.ready())

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self._core.model_ready(request.name, request.version))

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return ServerMetadataResponseConverter.from_types(self._core.server_metadata())

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        metadata = self._core.model_metadata(request.name, request.version)
        return ModelMetadataResponseConverter.from_types(metadata)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: aio.ServicerContext
    ) -> pb.ModelInferResponse:
        limits = self._core.admit(request.model_name, request.model_version)
        infer_request = ModelInferRequestConverter.to_types(
            request,
            DecodeLimits(limits.max_elements, limits.max_element_bytes, limits.max_tensor_elements),
        )
        response = await self._core.infer(infer_request, _deadline(context))
        return ModelInferResponseConverter.from_types(response)


def _deadline(context: aio.ServicerContext) -> float | None:
    """The caller's deadline on the ``time.monotonic()`` clock; None when it set none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining
