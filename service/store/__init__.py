"""Durable storage of the closed loop: posted samples, adaptation jobs, version records, the head
row that names the serving version, and the shared needs-adaptation marks.

SQLite (a file in the state dir) serves a single process; PostgreSQL serves a scale-out
deployment of serving replicas and one trainer.
"""

from __future__ import annotations

from pathlib import Path

from service.store._interface import (
    AdaptationMark,
    HeadCallback,
    HeadWatcher,
    JobStore,
    MarkStore,
    SampleStore,
    Store,
    TrainerLease,
    VersionRecord,
    VersionStore,
)
from service.store._postgres import PostgresStore
from service.store._sqlite import SQLiteStore

SQLITE_FILE = "loopserve.db"


def open_store(database_url: str, state_dir: Path) -> Store:
    """PostgreSQL at ``database_url``, or the SQLite file in ``state_dir`` when it is empty.

    Raises ConfigError for a malformed URL or a database of a newer schema, and Unavailable
    when PostgreSQL cannot be reached.
    """
    if database_url:
        return PostgresStore(database_url)
    return SQLiteStore(state_dir / SQLITE_FILE)


__all__ = [
    "SQLITE_FILE",
    "AdaptationMark",
    "HeadCallback",
    "HeadWatcher",
    "JobStore",
    "MarkStore",
    "PostgresStore",
    "SQLiteStore",
    "SampleStore",
    "Store",
    "TrainerLease",
    "VersionRecord",
    "VersionStore",
    "open_store",
]
