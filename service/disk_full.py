"""Reporting a full disk: counted every time, logged once per outage.

A full disk fails every write until an operator frees space; a line per failed call would flood
the log (and fill it further). Each failure is counted in ``loopserve_disk_full_total{operation}``;
the first one of an operation is logged as an ERROR, the next ones only when that operation has
succeeded in between (the disk recovered and filled up again).
"""

from __future__ import annotations

import logging
import threading

from service.errors import StorageFull
from service.metrics import Metrics

log = logging.getLogger(__name__)


class DiskFullReporter:
    """Counts and logs :class:`StorageFull` failures; thread-safe.

    ``operation`` values become label values: callers pass names from a fixed set (RPC method
    names, "fine-tune job"), never caller input.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._full: set[str] = set()
        self._lock = threading.Lock()

    def failed(self, operation: str, error: StorageFull) -> None:
        self._metrics.disk_full.labels(operation).inc()
        with self._lock:
            first = operation not in self._full
            self._full.add(operation)
        if first:
            log.error(
                "%s: %s (further failures are counted in loopserve_disk_full_total and logged "
                "again only after %s has succeeded)",
                operation, error, operation,
            )  # fmt: skip
        else:
            log.debug("%s: %s", operation, error)

    def succeeded(self, operation: str) -> None:
        if operation not in self._full:  # the common case, without the lock
            return
        with self._lock:
            recovered = operation in self._full
            self._full.discard(operation)
        if recovered:
            log.info("%s succeeds again after the disk was full", operation)
