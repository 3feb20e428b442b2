"""Server reflection under both names clients ask for: ``grpc.reflection.v1``, which grpcurl and
Postman try first, and ``grpc.reflection.v1alpha``, the one grpcio-reflection implements.

The two protocols are the same messages in another package. grpcio-reflection ships v1alpha
only, so v1's file descriptor is derived from v1alpha's (package and type names renamed) and
added to the default pool, where reflection describes it like any other service; a v1 call is
answered by v1alpha's servicer, each message converted through its wire bytes, which are the
same in both.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc import aio
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1_FILE = "grpc/reflection/v1/reflection.proto"
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
V1ALPHA_SERVICE: str = reflection.SERVICE_NAME
METHOD = "ServerReflectionInfo"


def enable_reflection(services: Iterable[str], server: aio.Server) -> None:
    """Answer reflection (both versions) on ``server``, listing ``services`` and itself."""
    names = (*services, V1_SERVICE, V1ALPHA_SERVICE)
    v1alpha = reflection.aio.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(v1alpha, server)
    request, response = v1_messages()
    v1 = _V1Servicer(v1alpha, response)
    handler = grpc.stream_stream_rpc_method_handler(
        v1.ServerReflectionInfo,
        request_deserializer=request.FromString,
        response_serializer=response.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE, {METHOD: handler}),)
    )


@functools.cache
def v1_messages() -> tuple[Any, Any]:
    """The message classes of ``grpc.reflection.v1``: (ServerReflectionRequest,
    ServerReflectionResponse)."""
    pool = descriptor_pool.Default()
    try:
        file = pool.FindFileByName(V1_FILE)
    except KeyError:  # not there yet: another library may have added it first
        pool.AddSerializedFile(_v1_file().SerializeToString())
        file = pool.FindFileByName(V1_FILE)
    types = file.message_types_by_name
    return (
        message_factory.GetMessageClass(types["ServerReflectionRequest"]),
        message_factory.GetMessageClass(types["ServerReflectionResponse"]),
    )


def _v1_file() -> Any:
    """v1alpha's file descriptor, renamed into v1's package."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    renamed = functools.partial(_renamed, f".{proto.package}.", f".{V1_PACKAGE}.")
    proto.name, proto.package = V1_FILE, V1_PACKAGE
    proto.options.Clear()  # v1alpha's: deprecated, and its Java and Go package names
    for message in proto.message_type:
        for field in message.field:
            if field.HasField("type_name"):  # a message field (set, even empty, it would be one)
                field.type_name = renamed(field.type_name)
    for service in proto.service:
        for method in service.method:
            method.input_type = renamed(method.input_type)
            method.output_type = renamed(method.output_type)
    return proto


def _renamed(old_prefix: str, new_prefix: str, name: str) -> str:
    return new_prefix + name.removeprefix(old_prefix) if name.startswith(old_prefix) else name


class _V1Servicer:
    """v1 calls answered by the v1alpha servicer."""

    def __init__(self, v1alpha: Any, response_type: Any) -> None:
        self._v1alpha = v1alpha
        self._response_type = response_type

    async def ServerReflectionInfo(
        self, requests: AsyncIterator[Any], context: aio.ServicerContext
    ) -> AsyncGenerator[Any, None]:
        v1alpha = self._v1alpha.ServerReflectionInfo(_as_v1alpha(requests), context)
        async with contextlib.aclosing(v1alpha) as answers:
            async for answer in answers:
                yield self._response_type.FromString(answer.SerializeToString())


async def _as_v1alpha(requests: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    async for request in requests:
        yield reflection_pb2.ServerReflectionRequest.FromString(request.SerializeToString())
