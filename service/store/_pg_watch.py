"""Head changes on PostgreSQL: LISTEN on a connection of its own, in a daemon thread.

A notification sent while the listener is disconnected is lost, so after every reconnect the
watcher calls back once with ``""`` (check every model); callers poll the head row as well.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg

from service.errors import LoopserveError
from service.store._interface import HeadCallback
from service.store._pg_conn import HEAD_CHANNEL, KEEPALIVES, Target

log = logging.getLogger(__name__)

APPLICATION_NAME = "loopserve-listen"
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0
# How often the thread looks up from waiting for notifications to see whether it should stop.
POLL_S = 0.2


class PostgresHeadWatcher:
    """:class:`~service.store.HeadWatcher` on PostgreSQL."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_change: HeadCallback) -> None:
        self.stop()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(on_change, self._stop), name="loopserve-head-watch", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self, on_change: HeadCallback, stop: threading.Event) -> None:
        backoff = FIRST_BACKOFF_S
        missed = False  # notifications may have been lost since the last connection
        while not stop.is_set():
            try:
                conn = self._target.connect(APPLICATION_NAME, **KEEPALIVES)
            except LoopserveError as exc:
                log.warning("head watcher cannot connect, retrying in %.1f s: %s", backoff, exc)
                missed = True
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            try:
                conn.execute(f"LISTEN {HEAD_CHANNEL}")
                backoff = FIRST_BACKOFF_S
                if missed:
                    _call(on_change, "")
                self._listen(conn, on_change, stop)
            except psycopg.Error as exc:
                log.warning("head watcher lost its connection: %s", self._target.clean(str(exc)))
            finally:
                conn.close()
            missed = True
            stop.wait(backoff)

    @staticmethod
    def _listen(
        conn: psycopg.Connection[Any], on_change: HeadCallback, stop: threading.Event
    ) -> None:
        while not stop.is_set():
            for notify in conn.notifies(timeout=POLL_S):
                _call(on_change, notify.payload)
                if stop.is_set():
                    return


def _call(on_change: HeadCallback, model: str) -> None:
    # The callback's failure must not end the watching.
    try:
        on_change(model)
    except Exception:
        log.exception("head watcher callback failed for model %r", model)
