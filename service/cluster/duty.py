"""The trainer's duty: hold the trainer lease, and while held look for work every poll.

Exactly one process of a deployment runs jobs. A standby tries the lease every
``poll_seconds``; the holder checks every poll that it still holds it. Once it lost it (its
database session ended: a network partition, ``pg_terminate_backend``, a database restart) it
must not go on as if it were the trainer, so ``on_lost`` ends the process, and its supervisor
starts it again as a standby.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from service.errors import LoopserveError
from service.metrics import Metrics
from service.store import TrainerLease

log = logging.getLogger(__name__)


class TrainerDuty:
    def __init__(
        self,
        lease: TrainerLease,
        metrics: Metrics,
        poll_seconds: float,
        on_acquired: Callable[[], None],
        on_tick: Callable[[], None],
        on_lost: Callable[[], None],
    ) -> None:
        self._lease = lease
        self._metrics = metrics
        self._poll = poll_seconds
        self._on_acquired = on_acquired
        self._on_tick = on_tick
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.holding = False
        metrics.trainer_lease.set(0)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="trainer-duty", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        standby_logged = False
        while not self._stop.is_set():
            if not self.holding:
                if self._try_acquire():
                    continue
                if not standby_logged:
                    log.info("another trainer holds the lease; standing by")
                    standby_logged = True
            elif not self._still_held():
                return
            else:
                self._guarded(self._on_tick, "looking for work")
            self._stop.wait(self._poll)

    def _try_acquire(self) -> bool:
        try:
            acquired = self._lease.try_acquire()
        except LoopserveError as exc:
            log.warning("cannot reach the database for the trainer lease: %s", exc)
            return False
        if not acquired:
            return False
        self.holding = True
        self._metrics.trainer_lease.set(1)
        log.info("holding the trainer lease: this process runs fine-tune jobs")
        self._guarded(self._on_acquired, "taking over")
        return True

    def _still_held(self) -> bool:
        try:
            held = self._lease.held()
        except LoopserveError:
            held = False
        if held:
            return True
        self.holding = False
        self._metrics.trainer_lease.set(0)
        log.error("lost the trainer lease; stopping so that a standby can take over")
        self._on_lost()
        return False

    @staticmethod
    def _guarded(action: Callable[[], None], what: str) -> None:
        try:
            action()
        except Exception:
            # The database may be briefly unreachable; the next poll tries again.
            log.exception("trainer: %s failed", what)
