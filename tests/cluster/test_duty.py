"""TrainerDuty: a standby takes the lease when it frees up; the holder looks for work every poll
and stops being the trainer the moment the lease is gone."""

from __future__ import annotations

import threading

from waiting import wait_until

from service.cluster import TrainerDuty
from service.errors import Unavailable
from service.metrics import Metrics


class Lease:
    def __init__(self, free: bool = True) -> None:
        self.free = free
        self.mine = False
        self.reachable = True
        self.tries = 0  # what a test waits on to know the duty has polled the lease

    def try_acquire(self) -> bool:
        self.tries += 1
        if not self.reachable:
            raise Unavailable("database unreachable")
        if self.free:
            self.free, self.mine = False, True
        return self.mine

    def held(self) -> bool:
        return self.mine

    def move_head(self, model: str, version: int, expected: int | None, job: str = "") -> bool:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Calls:
    def __init__(self) -> None:
        self.acquired = 0
        self.ticks = 0
        self.lost = threading.Event()

    def duty(self, lease: Lease, metrics: Metrics) -> TrainerDuty:
        return TrainerDuty(
            lease, metrics, 0.02,
            on_acquired=lambda: setattr(self, "acquired", self.acquired + 1),
            on_tick=lambda: setattr(self, "ticks", self.ticks + 1),
            on_lost=self.lost.set,
        )  # fmt: skip


def test_a_standby_takes_the_lease_once_it_is_free_then_looks_for_work() -> None:
    lease, calls, metrics = Lease(free=False), Calls(), Metrics()
    duty = calls.duty(lease, metrics)
    duty.start()
    try:
        wait_until(lambda: lease.tries >= 3)  # asked, and was refused, three times
        assert calls.acquired == 0 and calls.ticks == 0
        assert metrics.registry.get_sample_value("loopserve_trainer_lease") == 0
        lease.free = True  # the other trainer died
        wait_until(lambda: calls.ticks >= 3)
        assert calls.acquired == 1
        assert metrics.registry.get_sample_value("loopserve_trainer_lease") == 1
    finally:
        duty.stop()


def test_losing_the_lease_calls_on_lost_and_ends_the_duty() -> None:
    lease, calls, metrics = Lease(), Calls(), Metrics()
    duty = calls.duty(lease, metrics)
    duty.start()
    try:
        wait_until(lambda: calls.ticks >= 1)
        lease.mine = False  # the session was terminated
        assert calls.lost.wait(2)
        ticks = calls.ticks
        assert duty._thread is not None
        duty._thread.join(5)  # the duty ends: nothing is left that could tick again
        assert not duty._thread.is_alive()
        assert calls.ticks == ticks  # no more work after the loss
        assert metrics.registry.get_sample_value("loopserve_trainer_lease") == 0
        assert not duty.holding
    finally:
        duty.stop()


def test_an_unreachable_database_is_retried_and_failing_work_does_not_end_the_duty() -> None:
    lease, metrics = Lease(), Metrics()
    lease.reachable = False
    failures = []

    def tick() -> None:
        failures.append(1)
        raise Unavailable("database unreachable")

    duty = TrainerDuty(lease, metrics, 0.02, lambda: None, tick, lambda: None)
    duty.start()
    try:
        wait_until(lambda: lease.tries >= 3)  # three attempts that could not reach it
        assert not duty.holding
        lease.reachable = True
        wait_until(lambda: len(failures) >= 3)
        assert duty.holding
    finally:
        duty.stop()
