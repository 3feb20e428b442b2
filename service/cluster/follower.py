"""A replica follows the head row: a new head is verified, loaded, warmed and swapped in.

Two paths tell a replica the head moved: a notification (fast) and a poll every
``poll_seconds`` (a notification sent while the listener was disconnected is lost for good).
Both end in :meth:`HeadFollower.sync`, which compares each model's head with what serves.
While the database is unreachable the replica keeps serving what it has.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Protocol

from service.errors import LoopserveError
from service.metrics import Metrics
from service.store import HeadWatcher, VersionStore

log = logging.getLogger(__name__)
FREE_RETRIES = 3  # failures of one version retried at every poll before backing off
MAX_SKIPPED_POLLS = 30  # at most this many polls between tries (a minute at the default 2 s)


class Follower(Protocol):
    """What a served model offers the follower."""

    @property
    def loaded_version(self) -> int | None:
        """The version serving now (None while nothing is loaded)."""
        ...

    def follow(self, version: int) -> None:
        """Verify, load, warm and swap in ``version`` without moving the head; raises on
        failure (the old version keeps serving)."""
        ...


class HeadFollower:
    def __init__(
        self,
        models: Mapping[str, Follower],
        heads: VersionStore,
        metrics: Metrics,
        poll_seconds: float,
        watcher: HeadWatcher | None = None,
    ) -> None:
        self._models = dict(models)
        self._heads = heads
        self._metrics = metrics
        self._poll = poll_seconds
        self._watcher = watcher
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unreachable = False  # log an outage once, not every poll
        # model -> (version that failed to load, consecutive failures); polls skipped since.
        self._failures: dict[str, tuple[int, int]] = {}
        self._skipped: dict[str, int] = {}
        for name in self._models:
            for outcome in ("ok", "failed", "unreachable"):
                metrics.head_follow.labels(name, outcome)

    def start(self) -> None:
        if self._watcher is not None:
            self._watcher.start(self._notified)
        self._thread = threading.Thread(target=self._run, name="head-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._watcher is not None:
            self._watcher.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wait_for_head(self, model: str, timeout: float | None = None) -> int:
        """Block until ``model`` has a head row (a replica that starts before the trainer built
        the first version waits here); its version. TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        logged = False
        while True:
            try:
                head = self._heads.head(model)
            except LoopserveError as exc:
                log.warning("waiting for the database: %s", exc)
                head = None
            if head is not None:
                return head
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"model {model!r} has no serving version yet")
            if not logged:
                log.info("model %s has no serving version yet; waiting for the trainer", model)
                logged = True
            time.sleep(self._poll)

    def sync(self) -> None:
        """Bring every model to its head (called on a notification and on every poll)."""
        for name, model in self._models.items():
            if self._stop.is_set():
                return
            self._sync_one(name, model)

    def _sync_one(self, name: str, model: Follower) -> None:
        try:
            head = self._heads.head(name)
        except LoopserveError as exc:
            self._metrics.head_follow.labels(name, "unreachable").inc()
            if not self._unreachable:
                log.warning("cannot read the head row (still serving what is loaded): %s", exc)
            self._unreachable = True
            return
        if self._unreachable:
            log.info("database reachable again")
            self._unreachable = False
        if head is None:
            return
        self._metrics.head_version.labels(name).set(head)
        if head == model.loaded_version or self._backing_off(name, head):
            return
        try:
            model.follow(head)
        except Exception as exc:
            # Files still arriving on the shared volume, or a bad version: keep serving the old
            # one and try again at the next poll.
            self._metrics.head_follow.labels(name, "failed").inc()
            failures = self._failures.get(name, (head, 0))
            count = failures[1] + 1 if failures[0] == head else 1
            self._failures[name] = (head, count)
            log.warning("could not follow %s to version %d (retrying): %s", name, head, exc)
            return
        self._failures.pop(name, None)
        self._metrics.head_follow.labels(name, "ok").inc()

    def _backing_off(self, name: str, head: int) -> bool:
        """After a few failures to follow one version, try it less often: every try reads and
        hashes the whole version, which would otherwise recur every poll on a damaged one."""
        version, count = self._failures.get(name, (head, 0))
        if version != head or count < FREE_RETRIES:
            return False
        self._skipped[name] = self._skipped.get(name, 0) + 1
        if self._skipped[name] < min(2 ** (count - FREE_RETRIES), MAX_SKIPPED_POLLS):
            return True
        self._skipped[name] = 0
        return False

    def _notified(self, model: str) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sync()
            self._wake.wait(self._poll)
            self._wake.clear()
