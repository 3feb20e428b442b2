"""The drift worker process's entry point: lowered priority, few threads, no torch unless needed."""

from __future__ import annotations

import importlib.abc
import logging
import os
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from multiprocessing.connection import Connection
from types import ModuleType

from service.drift._messages import WorkerOptions
from service.drift._worker import Worker
from service.memory import bound_heap
from service.priority import lower_priority

ONLINE_METHODS = ("mmd", "lsdd")  # detectors that need torch (through alibi-detect)


def main(options: WorkerOptions, inbox: Connection, outbox: Connection) -> None:
    """Entry point of the worker process."""
    logging.basicConfig(
        level=options.log_level, format="%(asctime)s %(levelname)s drift-worker %(message)s"
    )
    bound_heap()  # a process that lives as long as the server, fitting reference after reference
    lower_priority(options.nice)
    _limit_threads(options.threads)
    if not any(r.embedding_method in ONLINE_METHODS for r in options.recipes.values()):
        _without_torch()
    Worker(options, outbox).run(inbox)


def _without_torch() -> None:
    """Keep torch out of this process when only windowed tests run: they need scipy alone and
    never import alibi-detect, which imports torch (about 270 MiB resident) only because it is
    installed; this guards against anything else that would."""
    import sys

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # its "no PyTorch found" notice
    # A finder that refuses them, not ``sys.modules[name] = None``: scipy 1.14+ looks modules up
    # in sys.modules by name (to recognise their arrays) and fails on a None entry.
    sys.meta_path.insert(0, _Refuse(frozenset({"torch", "tensorflow"})))


class _Refuse(importlib.abc.MetaPathFinder):
    """Makes ``import`` of the named top-level modules (and their submodules) fail."""

    def __init__(self, names: frozenset[str]) -> None:
        self._names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] in self._names:
            raise ModuleNotFoundError(f"{fullname} is kept out of the drift worker", name=fullname)
        return None


def _limit_threads(threads: int) -> None:
    """Set before alibi-detect (and with it torch) is first imported in this process, which
    happens at the first fit. One thread by default: the worker shares the machine with serving,
    and alibi-detect's small tensor ops ran tens of times slower (measured) when two OpenMP
    threads contended for busy cores."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
