"""Version records in the database: written at publish, and adopted from the volume once.

A version's files are written once under ``versions/<n>/`` on the (shared) volume; its record
carries the digest a replica checks before loading it. ``loopserve init`` builds version 1 on the
volume alone, so a process that runs jobs adopts what the volume holds at start: records for
versions the database does not know, and the head from the ``current`` file if the database has
none yet (the first start of a shared deployment, or a single machine moving to PostgreSQL).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from service.errors import Conflict
from service.registry import ModelRegistry, VersionInfo
from service.store import VersionRecord, VersionStore

log = logging.getLogger(__name__)


def recorder(store: VersionStore) -> Callable[[VersionInfo], None]:
    """The registry's ``on_publish`` hook: record each new version in ``store``."""

    def record(info: VersionInfo) -> None:
        store.add_version(_record(info))

    return record


def adopt_volume(state_dir: Path, store: VersionStore, model: str) -> int | None:
    """Record the volume's versions the store lacks and, when the model has no head row yet,
    point it where the ``current`` file does. The head afterwards (None: nothing built yet)."""
    files = ModelRegistry(state_dir, model)  # the file pointer: what `loopserve init` wrote
    known = {record.version for record in store.versions(model)}
    for info in files.versions():
        if info.version not in known:
            with contextlib.suppress(Conflict):  # another process recorded it a moment ago
                store.add_version(_record(info))
    head = store.head(model)
    current = files.current()
    if head is None and current is not None:
        if store.move_head(model, current.version, None):
            log.info("model %s: head row set to version %d from the volume", model, current.version)
        head = store.head(model)
    return head


def _record(info: VersionInfo) -> VersionRecord:
    return VersionRecord(
        model=info.model,
        version=info.version,
        digest=info.meta.digest,
        status=info.meta.status,
        created=time.time(),
    )
