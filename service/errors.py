"""Transport-neutral error kinds.

Core code raises these; only ``service.api`` turns them into gRPC status codes (one table in
``service.api.status``). Anything else that escapes is a bug and is reported as INTERNAL with a
generic message, details in the log.

    LoopserveError
    ├── InvalidInput        the caller sent something malformed (bad tensor, shape, empty input)
    ├── NotFound            unknown model or version
    ├── Conflict            the state changed underneath (a version recorded twice, a lost CAS)
    │   └── DataPurged      a candidate's training data was purged: it is never published
    ├── Overloaded          queue full / too much in flight: retry later
    │   └── StorageFull     the disk or the database is full: nothing was stored; retry
    │                       only once space was freed, not at once
    ├── Unavailable         model not ready, loading, or server shutting down
    ├── AlreadyEnded        the call needs something that has already ended (cancelling a job
    │                       that is over)
    ├── DeadlineExceeded    the caller's deadline passed before its request ran
    ├── Unauthenticated     missing credentials
    ├── PermissionDenied    credentials not allowed to do this
    └── ConfigError         a model definition or setting is invalid (raised at start, not per call)
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager


class LoopserveError(Exception):
    """Base of every error loopserve raises on purpose. The message is safe to show callers."""


class InvalidInput(LoopserveError):
    pass


class NotFound(LoopserveError):
    pass


class Conflict(LoopserveError):
    pass


class DataPurged(Conflict):
    """Samples a job trained or gated on were purged after it read them: its candidate is not
    published (checked under the same lock or transaction as the head move)."""


class Overloaded(LoopserveError):
    pass


class StorageFull(Overloaded):
    """A write failed because the disk (or the database's disk, or a quota) is full.

    Nothing of the failed write was kept: SQLite and PostgreSQL roll the transaction back, and
    files are written to a temporary name first and renamed only when complete.
    """

    def __init__(self, what: str) -> None:
        super().__init__(
            f"disk full: could not store {what}; nothing of it was stored. Retry after the "
            "operator frees space, not at once"
        )
        self.what = what


# ENOSPC: no space left on the device; EDQUOT: the user's disk quota is used up.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` is an OSError saying that the disk or a quota is full."""
    return isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS


@contextmanager
def disk_writes(what: str) -> Iterator[None]:
    """Turn a disk-full OSError inside the block into :class:`StorageFull` naming ``what``."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise StorageFull(what) from exc
        raise


class Unavailable(LoopserveError):
    pass


class AlreadyEnded(LoopserveError):
    """What the call acts on has already ended, so there is nothing to do: a job to cancel
    has finished. Not worth retrying."""


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
