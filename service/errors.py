"""Transport-neutral error kinds.

Core code raises these; only ``service.api`` turns them into gRPC status codes (one table in
``service.api.status``). Anything else that escapes is a bug and is reported as INTERNAL with a
generic message, details in the log.

    LoopserveError
    ├── InvalidInput        the caller sent something malformed (bad tensor, shape, empty input)
    ├── NotFound            unknown model or version
    ├── Conflict            the state changed underneath (a version recorded twice, a lost CAS)
    ├── Overloaded          queue full / too much in flight: retry later
    ├── Unavailable         model not ready, loading, or server shutting down
    ├── DeadlineExceeded    the caller's deadline passed before its request ran
    ├── Unauthenticated     missing credentials
    ├── PermissionDenied    credentials not allowed to do this
    └── ConfigError         a model definition or setting is invalid (raised at start, not per call)
"""

from __future__ import annotations


class LoopserveError(Exception):
    """Base of every error loopserve raises on purpose. The message is safe to show callers."""


class InvalidInput(LoopserveError):
    pass


class NotFound(LoopserveError):
    pass


class Conflict(LoopserveError):
    pass


class Overloaded(LoopserveError):
    pass


class Unavailable(LoopserveError):
    pass


class DeadlineExceeded(LoopserveError):
    """The caller's deadline passed before its request ran; the request was not run."""


class Unauthenticated(LoopserveError):
    pass


class PermissionDenied(LoopserveError):
    pass


class ConfigError(LoopserveError):
    pass


QUOTE_LIMIT = 80


def quote(value: str, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for a message, cut to about ``limit`` characters.

    Caller input echoed in an error message travels back in the status trailer (gRPC refuses
    metadata beyond a few KB) and into the log, so a long value is shown as its first ``limit``
    characters, an ellipsis and its length: ``'xxxx…' (100000 characters)``.
    """
    if len(value) <= limit:
        shown = repr(value)
        if len(shown) <= limit + 2:  # + the quotes
            return shown
    # Escapes (\x00, \U0001f600) can make the repr of a short value long: cut the repr too.
    body = repr(value[:limit])[1:-1][:limit]
    return f"'{body}…' ({len(value)} characters)"


# Identifiers a caller sends (model and tensor names, request, sample and job ids, labels) are
# short by nature; a longer one is refused before it is looked up, stored or echoed.
MAX_IDENTIFIER_CHARS = 128


def check_length(what: str, value: str, limit: int = MAX_IDENTIFIER_CHARS) -> None:
    """Refuse ``value`` with InvalidInput when it is longer than ``limit`` characters."""
    if len(value) > limit:
        raise InvalidInput(f"{what} {quote(value, 40)} is too long; at most {limit} characters")
