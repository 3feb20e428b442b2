"""Server reflection under both names: grpc.reflection.v1 (what grpcurl and Postman try first)
and grpc.reflection.v1alpha. A client as grpcurl's: list the services, fetch the file that
defines a symbol with its dependencies, and build a descriptor pool from them."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from fake_adaptation import FakeAdaptationCore, FakeServer
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2

V1 = "grpc.reflection.v1.ServerReflection"
V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
EXPECTED = {
    "inference.GRPCInferenceService",
    "loopserve.v1.Adaptation",
    "grpc.health.v1.Health",
    V1,
    V1ALPHA,
}


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    server = FakeServer(FakeAdaptationCore())
    try:
        with grpc.insecure_channel(server.address) as open_channel:
            yield open_channel
    finally:
        server.stop()


def reflect(
    channel: grpc.Channel, service: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    """One request to ``service``. v1's messages are v1alpha's on the wire, so v1alpha's classes
    encode both: the client does not share the server's v1 types."""
    call = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    (response,) = list(call(iter([request]), timeout=10))
    return response


def pool_for(channel: grpc.Channel, service: str, symbol: str) -> descriptor_pool.DescriptorPool:
    """A fresh pool with the file that defines ``symbol`` and its dependencies, as sent."""
    response = reflect(
        channel, service, reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    )
    assert response.WhichOneof("message_response") == "file_descriptor_response", response
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(data)
        for data in response.file_descriptor_response.file_descriptor_proto
    ]
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()
    while files:  # dependencies first
        ready = [f for f in files if set(f.dependency) <= added]
        assert ready, f"unresolved dependencies in {[f.name for f in files]}"
        for file in ready:
            pool.Add(file)
            added.add(file.name)
            files.remove(file)
    return pool


@pytest.mark.parametrize("service", [V1, V1ALPHA])
def test_both_versions_list_every_service(channel: grpc.Channel, service: str) -> None:
    response = reflect(channel, service, reflection_pb2.ServerReflectionRequest(list_services=""))

    assert {s.name for s in response.list_services_response.service} == EXPECTED
    assert response.original_request.list_services == ""


@pytest.mark.parametrize("service", [V1, V1ALPHA])
def test_both_versions_describe_a_service_with_its_dependencies(
    channel: grpc.Channel, service: str
) -> None:
    pool = pool_for(channel, service, "loopserve.v1.Adaptation")

    method = pool.FindServiceByName("loopserve.v1.Adaptation").methods_by_name["AddSamples"]
    assert method.input_type.full_name == "loopserve.v1.AddSamplesRequest"
    infer = pool_for(channel, service, "inference.GRPCInferenceService")
    assert "ModelInfer" in infer.FindServiceByName("inference.GRPCInferenceService").methods_by_name


def test_v1_describes_itself_in_its_own_package(channel: grpc.Channel) -> None:
    pool = pool_for(channel, V1, V1)

    method = pool.FindServiceByName(V1).methods_by_name["ServerReflectionInfo"]
    assert method.input_type.full_name == "grpc.reflection.v1.ServerReflectionRequest"
    assert method.output_type.full_name == "grpc.reflection.v1.ServerReflectionResponse"
    assert method.containing_service.file.name == "grpc/reflection/v1/reflection.proto"
    assert not method.containing_service.file.GetOptions().deprecated


@pytest.mark.parametrize("service", [V1, V1ALPHA])
def test_an_unknown_symbol_is_not_found_in_both_versions(
    channel: grpc.Channel, service: str
) -> None:
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Service")

    response = reflect(channel, service, request)

    assert response.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert response.original_request.file_containing_symbol == "no.such.Service"
