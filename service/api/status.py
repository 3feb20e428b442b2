"""The one table from error kinds to gRPC status codes."""

from __future__ import annotations

import grpc

from service.errors import (
    AlreadyEnded,
    ConfigError,
    Conflict,
    DataPurged,
    DeadlineExceeded,
    InvalidInput,
    LoopserveError,
    NotFound,
    Overloaded,
    PermissionDenied,
    StorageFull,
    Unauthenticated,
    Unavailable,
)


class MalformedRequest(InvalidInput):
    """The request's bytes are not the protobuf message the method takes."""


STATUS_FOR_ERROR: dict[type[LoopserveError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Conflict: grpc.StatusCode.ABORTED,
    DataPurged: grpc.StatusCode.ABORTED,  # a Conflict, listed to be plain
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    StorageFull: grpc.StatusCode.RESOURCE_EXHAUSTED,  # an Overloaded, listed to be plain
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    ConfigError: grpc.StatusCode.FAILED_PRECONDITION,
    AlreadyEnded: grpc.StatusCode.FAILED_PRECONDITION,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
}
INTERNAL_MESSAGE = "internal error; the server log has the details"


def status_for(error: BaseException) -> grpc.StatusCode:
    """The status for an error; INTERNAL for anything that is not a deliberate loopserve error."""
    for kind in type(error).__mro__:
        if kind in STATUS_FOR_ERROR:
            return STATUS_FOR_ERROR[kind]
    return grpc.StatusCode.INTERNAL


def public_message(error: BaseException) -> str:
    return str(error) if status_for(error) is not grpc.StatusCode.INTERNAL else INTERNAL_MESSAGE
