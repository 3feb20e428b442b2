"""What every task's exported model is checked with before it is published: a CPU session on the
file as the server would run it, and the error for a graph that does not reproduce torch."""

from __future__ import annotations

from pathlib import Path

from service.errors import LoopserveError
from service.runtime import LoadedVersion, Preprocessor, SessionOptions


class ExportError(LoopserveError):
    """The exported graph does not reproduce the torch model."""


def check_session(
    path: Path, preprocessor: Preprocessor, labels: list[str], threads: int = 0
) -> LoadedVersion:
    """A CPU session on ``path`` with the serving ``preprocessor``. In a background job:
    ``threads`` only and no spinning, so the checks do not take cores from serving."""
    options = SessionOptions(
        intra_op_threads=threads, providers="cpu", thread_spinning=threads == 0
    )
    return LoadedVersion("check", 0, path, preprocessor, labels, options)
