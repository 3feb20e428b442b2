"""The closed loop split by role over one store: a serving replica stores samples and queues
requested jobs but never runs one; the trainer adopts them; a standby trainer does nothing;
a drift alarm on a replica is a mark in the store that the trainer sees."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import test_job_races
from test_job_races import LABELS, MODEL, FakeServed, GatedJobs
from waiting import wait_for

from service.adaptation.events import EventBus
from service.adaptation.loop import AdaptationService
from service.adaptation.predictions import PredictionLog
from service.config import AdaptationRecipe
from service.domain.loop import JobState, NewSample
from service.metrics import Metrics
from service.security import ANONYMOUS
from service.store import SQLiteStore

gated = test_job_races.gated  # the fake job whose end each test releases


class Roles:
    def __init__(self, tmp_path: Path) -> None:
        recipe = AdaptationRecipe(
            min_new_samples=50, settle_seconds=0.0, max_retries=0, backoff_seconds=0.0
        )
        self.served = FakeServed(tmp_path / "state", recipe)
        self.store = SQLiteStore(tmp_path / "state" / "loopserve.db")
        self.holding = False
        self.replica = self._service(tmp_path, "replica", runs_jobs=False)
        self.trainer = self._service(tmp_path, "trainer", may_run=lambda: self.holding)

    def _service(
        self,
        tmp_path: Path,
        name: str,
        runs_jobs: bool = True,
        may_run: Callable[[], bool] = lambda: True,
    ) -> AdaptationService:
        return AdaptationService(
            {MODEL: self.served},
            self.store, self.store, EventBus(), PredictionLog(), Metrics(),
            tmp_path / name / "jobs", marks=self.store, replica=name, runs_jobs=runs_jobs,
            may_run_jobs=may_run,
        )  # fmt: skip

    def post(self, count: int) -> None:
        samples = [NewSample(f"text {i}", LABELS[i % 2]) for i in range(count)]
        asyncio.run(self.replica.add_samples(MODEL, samples, caller=ANONYMOUS))


@pytest.fixture
def roles(tmp_path: Path, gated: GatedJobs) -> Iterator[Roles]:
    running = Roles(tmp_path)
    yield running
    for k in range(10):
        gated.gate(k).set()
    running.replica.stop(5)
    running.trainer.stop(5)
    running.store.close()


def wait_for_state(roles: Roles, job_id: str, state: JobState) -> None:
    wait_for(lambda: roles.store.job(job_id), lambda job: job.state is state, 10, f"job {state}")


def test_a_replica_stores_labels_and_queues_a_requested_job_but_runs_none(
    roles: Roles, gated: GatedJobs
) -> None:
    roles.post(60)  # past min_new_samples: a process that runs jobs would start one
    assert roles.store.latest(MODEL) is None

    queued = asyncio.run(roles.replica.start_fine_tune(MODEL, "from an operator"))
    again = asyncio.run(roles.replica.start_fine_tune(MODEL, "twice"))

    assert queued.state is JobState.QUEUED and queued.trigger == "manual"
    assert again.id == queued.id  # the unfinished row, not a second one
    roles.replica.wait_idle(2)  # a job this replica had started would be at its gate by now
    assert roles.store.job(queued.id).state is JobState.QUEUED
    assert not gated.running.is_set()


def test_a_standby_trainer_runs_nothing_and_the_lease_holder_adopts_the_queued_job(
    roles: Roles, gated: GatedJobs
) -> None:
    roles.post(10)
    queued = asyncio.run(roles.replica.start_fine_tune(MODEL, "from an operator"))
    roles.trainer.poll()  # not holding the lease: a standby
    assert roles.store.job(queued.id).state is JobState.QUEUED

    roles.holding = True
    roles.trainer.poll()
    wait_for_state(roles, queued.id, JobState.RUNNING)
    gated.gate(0).set()
    wait_for_state(roles, queued.id, JobState.PROMOTED)


def test_a_drift_alarm_on_a_replica_reaches_the_trainer_and_promotion_clears_it(
    roles: Roles, gated: GatedJobs
) -> None:
    roles.replica.raise_drift_alarm(MODEL)
    assert roles.store.latest(MODEL) is None  # the replica starts nothing
    status = asyncio.run(roles.trainer.model_status(MODEL))
    assert status.needs_adaptation

    roles.post(30)  # drift_min_samples (default 20) labels since the alarm
    roles.holding = True
    roles.trainer.poll()
    job = roles.store.latest(MODEL)
    assert job is not None and job.trigger == "drift"
    gated.gate(0).set()
    wait_for_state(roles, job.id, JobState.PROMOTED)
    assert roles.store.marks(MODEL) == []
    assert not asyncio.run(roles.replica.model_status(MODEL)).needs_adaptation
