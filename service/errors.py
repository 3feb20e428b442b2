"""Transport-neutral error kinds.

Core code raises these; only ``service.api`` turns them into gRPC status codes (one table in
``service.api.status``). Anything else that escapes is a bug and is reported as INTERNAL with a
generic message, details in the log.

    LoopserveError
    ├── InvalidInput        the caller sent something malformed (bad tensor, shape, empty input)
    ├── NotFound            unknown model or version
    ├── Overloaded          queue full / too much in flight: retry later
    ├── Unavailable         model not ready, loading, or server shutting down
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


class Overloaded(LoopserveError):
    pass


class Unavailable(LoopserveError):
    pass


class Unauthenticated(LoopserveError):
    pass


class PermissionDenied(LoopserveError):
    pass


class ConfigError(LoopserveError):
    pass
