"""The one table from error kinds to gRPC status codes (service.api.status)."""

from __future__ import annotations

import inspect

import grpc
import pytest

from service import errors
from service.api.status import INTERNAL_MESSAGE, STATUS_FOR_ERROR, public_message, status_for
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

# The documented table (service/errors.py docstring and service/api/status.py).
DOCUMENTED: dict[type[LoopserveError], grpc.StatusCode] = {
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Conflict: grpc.StatusCode.ABORTED,
    DataPurged: grpc.StatusCode.ABORTED,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    StorageFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    ConfigError: grpc.StatusCode.FAILED_PRECONDITION,
    AlreadyEnded: grpc.StatusCode.FAILED_PRECONDITION,
}


def _error_subclasses() -> list[type[LoopserveError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, LoopserveError) and cls is not LoopserveError
    ]


def test_every_error_kind_has_a_documented_status() -> None:
    found = set(_error_subclasses())

    assert found == set(DOCUMENTED), (
        "service.errors and the documented error→status table disagree; "
        f"undocumented: {sorted(c.__name__ for c in found - set(DOCUMENTED))}, "
        f"missing: {sorted(c.__name__ for c in set(DOCUMENTED) - found)}"
    )
    assert STATUS_FOR_ERROR == DOCUMENTED


# StorageFull writes its own message around what could not be stored (below).
@pytest.mark.parametrize(
    "kind", [k for k in DOCUMENTED if k is not StorageFull], ids=lambda kind: kind.__name__
)
def test_error_maps_to_its_code_and_keeps_its_message(kind: type[LoopserveError]) -> None:
    error = kind(f"a caller-facing message about {kind.__name__}")

    assert status_for(error) is DOCUMENTED[kind]
    assert public_message(error) == f"a caller-facing message about {kind.__name__}"


def test_a_full_disk_is_resource_exhausted_and_says_not_to_retry_at_once() -> None:
    error = StorageFull("the samples")
    assert status_for(error) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert public_message(error) == (
        "disk full: could not store the samples; nothing of it was stored. Retry after the "
        "operator frees space, not at once"
    )


def test_subclass_of_invalid_input_inherits_its_code() -> None:
    class EmptyText(InvalidInput):
        pass

    class VeryEmptyText(EmptyText):
        pass

    for error in (EmptyText("text[0] is empty"), VeryEmptyText("text[0] is empty")):
        assert status_for(error) is grpc.StatusCode.INVALID_ARGUMENT
        assert public_message(error) == "text[0] is empty"


def test_subclass_of_not_found_inherits_its_code() -> None:
    class NoSuchVersion(NotFound):
        pass

    assert status_for(NoSuchVersion("no version 9")) is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "error",
    [
        Exception("database password is hunter2"),
        RuntimeError("database password is hunter2"),
        KeyError("database password is hunter2"),
        ValueError("database password is hunter2"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_unexpected_exception_is_internal_with_a_generic_message(error: Exception) -> None:
    assert status_for(error) is grpc.StatusCode.INTERNAL
    message = public_message(error)
    assert message == INTERNAL_MESSAGE
    assert "hunter2" not in message
    assert "password" not in message


def test_generic_message_points_to_the_log() -> None:
    assert "log" in INTERNAL_MESSAGE
