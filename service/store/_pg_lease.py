"""The trainer lease on PostgreSQL: a session-level advisory lock on a dedicated connection.

The connection is not from a pool (a pooled session would hand the lock to whoever borrows it
next) and has TCP keepalives, so a trainer on a lost host loses the lock within about 25 s; a
crashed one loses it at once. A head move over the lease runs as one statement that also
requires the lock to be held by this very session: a trainer whose session ended (crash, network
loss, ``pg_terminate_backend``) cannot publish, even if it has not noticed yet.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import psycopg

from service.errors import Unavailable, quote
from service.store._pg_conn import HEAD_CHANNEL, KEEPALIVES, Target
from service.store._pg_fence import fence

# pg_try_advisory_lock key of the trainer lease ("loopserv"): one trainer per database.
LEASE_KEY = 0x6C6F_6F70_7365_7276
APPLICATION_NAME = "loopserve-trainer"

# pg_locks shows a one-bigint advisory key as classid (high half), objid (low half), objsubid 1.
_HELD = (
    "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND pid = pg_backend_pid() AND objsubid = 1"
    " AND ((classid::bigint << 32) | objid::bigint) = %(key)s"
)
_MOVE = f"""
WITH lease AS (SELECT EXISTS ({_HELD}) AS held),
moved AS (
    UPDATE heads SET version = %(version)s, moved = %(now)s
    WHERE model = %(model)s AND version = %(expected)s AND (SELECT held FROM lease)
    RETURNING model
)
SELECT (SELECT held FROM lease), (SELECT count(*) FROM moved),
       (SELECT count(*) FROM (SELECT pg_notify('{HEAD_CHANNEL}', model) FROM moved) AS n)
"""
_CREATE = f"""
WITH lease AS (SELECT EXISTS ({_HELD}) AS held),
moved AS (
    INSERT INTO heads (model, version, moved)
    SELECT %(model)s, %(version)s, %(now)s WHERE (SELECT held FROM lease)
    ON CONFLICT (model) DO NOTHING
    RETURNING model
)
SELECT (SELECT held FROM lease), (SELECT count(*) FROM moved),
       (SELECT count(*) FROM (SELECT pg_notify('{HEAD_CHANNEL}', model) FROM moved) AS n)
"""


class PostgresLease:
    """:class:`~service.store.TrainerLease` on PostgreSQL; thread-safe."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._acquired = False  # the lock was granted on the current connection

    def try_acquire(self) -> bool:
        with self._lock:
            if self._acquired and self._held():
                return True
            # A lost session cannot get its lock back: start over on a fresh connection.
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._reconnect()
            assert self._conn is not None
            try:
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LEASE_KEY,)).fetchone()
            except psycopg.Error as exc:
                self._drop()
                raise self._target.error(exc) from None
            self._acquired = bool(row and row[0])
            return self._acquired

    def held(self) -> bool:
        with self._lock:
            return self._acquired and self._held()

    def move_head(self, model: str, version: int, expected: int | None, job: str = "") -> bool:
        params = {
            "key": LEASE_KEY,
            "model": model,
            "version": version,
            "expected": expected,
            "now": time.time(),
        }
        with self._lock:
            if self._conn is None or not self._acquired:
                raise self._lost(model)
            try:
                with self._conn.transaction():
                    if job:  # the purge check, in the transaction that moves the head
                        fence(self._conn, model, job)
                    statement = _CREATE if expected is None else _MOVE
                    row = self._conn.execute(statement, params).fetchone()
            except psycopg.OperationalError:
                # Whether a dropped session committed is unknowable here, but it cannot have:
                # the statement commits only while the session, and so the lock, is alive.
                self._drop()
                raise self._lost(model) from None
            except psycopg.Error as exc:
                raise self._target.error(exc) from None
            held, moved = (bool(row[0]), int(row[1])) if row else (False, 0)
            if not held:
                self._acquired = False
                raise self._lost(model)
            return moved == 1

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _held(self) -> bool:
        if self._conn is None:
            return False
        try:
            row = self._conn.execute(f"SELECT EXISTS ({_HELD})", {"key": LEASE_KEY}).fetchone()
        except psycopg.Error:
            self._drop()
            return False
        return bool(row and row[0])

    def _reconnect(self) -> None:
        self._drop()
        self._conn = self._target.connect(APPLICATION_NAME, **KEEPALIVES)

    def _drop(self) -> None:
        """Close the session; that releases the lock if the server still has it."""
        self._acquired = False
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(psycopg.Error):
                # Released now, not when the server gets round to ending the session, so that
                # a standby's next try succeeds.
                if not conn.broken:
                    conn.execute("SELECT pg_advisory_unlock_all()")
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _lost(self, model: str) -> Unavailable:
        return Unavailable(
            f"the trainer lease lost its hold on PostgreSQL at {self._target.redacted}; the head"
            f" of model {quote(model)} was not moved"
        )
