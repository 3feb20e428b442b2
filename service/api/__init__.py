"""The gRPC surface: the only package that imports grpc and generated code."""

from service.api.server import GrpcServer, build_server

__all__ = ["GrpcServer", "build_server"]
