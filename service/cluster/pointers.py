"""The serving-version pointer kept in the database's head row instead of a file.

A file renamed on a network volume can stay invisible to other hosts for as long as their
attribute cache lives (up to a minute on NFS); a row is read fresh by every replica.
"""

from __future__ import annotations

import os
import socket

from service.store import TrainerLease, VersionStore


class StoreHeadPointer:
    """The head row of one model, moved by compare-and-set (operators' rollbacks)."""

    def __init__(self, store: VersionStore, model: str) -> None:
        self._store = store
        self._model = model

    def read(self) -> int | None:
        return self._store.head(self._model)

    def compare_and_set(self, version: int, expected: int | None, job: str = "") -> bool:
        return self._store.move_head(self._model, version, expected, job)


class LeaseHeadPointer(StoreHeadPointer):
    """The trainer's pointer: it moves only over the lease's own session, so a trainer that
    lost the lease (its session ended) cannot publish."""

    def __init__(self, store: VersionStore, lease: TrainerLease, model: str) -> None:
        super().__init__(store, model)
        self._lease = lease

    def compare_and_set(self, version: int, expected: int | None, job: str = "") -> bool:
        return self._lease.move_head(self._model, version, expected, job)


def replica_name() -> str:
    """This process among the deployment's: host (the pod name on Kubernetes) and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"
