"""Cancelling a job through any process of a deployment: a serving replica records the request
in the store, and the trainer that runs the job ends it at its next poll, with the same error.

The real AdaptationService and JobRunner on both store backends, with the job's process a
``sleep`` (the runner starts, records and ends it as it would a fine-tune's). The replica is
served over gRPC, so the ``loopserve cancel`` command, the api and the core are all real.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_adaptation import FakeServer
from test_job_races import MODEL
from test_purge import FakeProcess, Loop, running_loop
from waiting import wait_until

from service.adaptation import jobs
from service.adaptation.events import EventBus
from service.adaptation.jobs import PROCESS_FILE, JobRunner
from service.adaptation.loop import AdaptationService
from service.adaptation.predictions import PredictionLog
from service.cli import main
from service.domain.loop import Job, JobState
from service.metrics import Metrics
from service.security import ANONYMOUS
from service.store import PostgresStore, SQLiteStore, Store

CANCELLED = f"cancelled by {ANONYMOUS}"  # the replica's gRPC server runs without tokens


class Replica:
    """A serving replica: the same store through a connection of its own, no jobs, gRPC."""

    def __init__(self, trainer: Loop, store: Store, work_dir: Path) -> None:
        self.store = store
        self.service = AdaptationService(
            {MODEL: trainer.served}, store, store, EventBus(), PredictionLog(), Metrics(),
            work_dir, runs_jobs=False,
        )  # fmt: skip
        self.server = FakeServer(self.service)  # the real core, not a fake

    def cli(self, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
        code = main([*args, "--addr", self.server.address, "--model", MODEL])
        out, err = capsys.readouterr()
        return code, out, err

    def close(self) -> None:
        self.server.stop()
        self.store.close()


@pytest.fixture
def sleeping_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job's process sleeps until it is ended (it never writes a result)."""
    monkeypatch.setattr(jobs, "job_command", lambda spec_path: ["sleep", "60"])


@pytest.fixture(params=["sqlite", "postgres"])
def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, sleeping_jobs: None
) -> Iterator[tuple[Loop, Replica]]:
    """The trainer (a Loop that runs jobs) and a replica on the store ``request.param`` names."""
    state = tmp_path / "state"
    # FakeProcess is not patched in: running_loop only opens its gate at the end.
    with running_loop(request, state, FakeProcess()) as trainer:
        if request.param == "sqlite":
            store: Store = SQLiteStore(state / "loopserve.db")
        else:
            store = PostgresStore(request.getfixturevalue("database_url"))
        replica = Replica(trainer, store, tmp_path / "replica")
        yield trainer, replica
        replica.close()


def start_running(trainer: Loop) -> Job:
    """A job the trainer runs, once its process has started."""
    trainer.post("labeler", 10)
    job = trainer.start()
    wait_until(
        lambda: (trainer.state_dir / "jobs" / job.id / PROCESS_FILE).exists(), 20, "its process"
    )
    return job


def job_pid(trainer: Loop, job: Job) -> int:
    record = (trainer.state_dir / "jobs" / job.id / PROCESS_FILE).read_text(encoding="utf-8")
    return int(json.loads(record)["pid"])


def test_a_cancel_through_a_replica_stops_the_job_at_the_trainers_next_poll(
    cluster: tuple[Loop, Replica], capsys: pytest.CaptureFixture[str]
) -> None:
    trainer, replica = cluster
    job = start_running(trainer)

    code, out, err = replica.cli("cancel", job.id, capsys=capsys)
    assert (code, err) == (0, "")
    assert out.startswith(f"job {job.id} running, cancel requested (manual, base version 1")
    assert f"): {CANCELLED}\nthe process that runs the job ends it at its next poll\n" in out
    requested = replica.store.job(job.id)
    assert (requested.state, requested.error, requested.cancel_requested) == (
        JobState.RUNNING, CANCELLED, True,
    )  # fmt: skip
    code, out, _ = replica.cli("status", capsys=capsys)
    assert f"job: {job.id} running, cancel requested (manual" in out
    os.kill(job_pid(trainer, job), 0)  # the process runs on until the trainer polls

    trainer.service.poll()
    done = trainer.wait_finished(job)
    assert (done.state, done.error, done.cancelled) == (JobState.FAILED, CANCELLED, True)
    # A job that has ended cannot be cancelled: the caller is told so.
    code, out, err = replica.cli("cancel", job.id, capsys=capsys)
    assert (code, out) == (1, "")
    assert err == (
        f"loopserve: FAILED_PRECONDITION: job {job.id} of {MODEL!r} has already ended (failed); "
        "there is nothing to cancel\n"
    )
    # A cancelled job is not retried.
    trainer.service.poll()
    assert [j.id for j in trainer.store.recent(MODEL)] == [job.id]


def test_a_queued_job_cancelled_through_a_replica_fails_at_once_and_is_never_adopted(
    cluster: tuple[Loop, Replica], capsys: pytest.CaptureFixture[str]
) -> None:
    trainer, replica = cluster
    trainer.post("labeler", 10)
    code, out, _ = replica.cli("finetune", capsys=capsys)
    queued = replica.store.latest(MODEL)
    assert code == 0 and queued is not None and queued.state is JobState.QUEUED

    code, out, _ = replica.cli("cancel", queued.id, "--json", capsys=capsys)
    assert code == 0
    shown = json.loads(out)
    assert (shown["state"], shown["error"], shown["cancel_requested"]) == (
        "failed", CANCELLED, False,
    )  # fmt: skip
    trainer.service.poll()  # the trainer adopts queued jobs: not this one
    assert [(j.id, j.state) for j in trainer.store.recent(MODEL)] == [(queued.id, JobState.FAILED)]


def test_a_job_that_fails_before_the_poll_stays_cancelled(cluster: tuple[Loop, Replica]) -> None:
    """The request is stored; the job's process dies of something else before the trainer
    polls: the job is recorded cancelled (not retried), not as the crash."""
    trainer, replica = cluster
    job = start_running(trainer)
    cancel = replica.service.cancel_job(MODEL, job.id, caller=ANONYMOUS)
    assert asyncio.run(cancel).cancel_requested

    os.kill(job_pid(trainer, job), signal.SIGKILL)
    done = trainer.wait_finished(job)
    assert (done.state, done.error) == (JobState.FAILED, CANCELLED)


def test_a_job_cancelled_before_its_process_started_never_starts_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "job_command", lambda spec_path: pytest.fail("it started"))
    store = SQLiteStore(tmp_path / "loopserve.db")
    try:
        job = store.create(MODEL, "manual", "test", base_version=1, samples_upto=0)
        runner: Any = JobRunner(Any, store, store, EventBus(), Metrics(), tmp_path)  # no model
        runner._job_id = job.id  # accepted, as try_start leaves it before the process starts
        assert runner.cancel(job.id, "cancelled by ops") is True
        assert store.job(job.id).error == "cancelled by ops"
        (tmp_path / job.id).mkdir()
        with pytest.raises(RuntimeError, match=r"^cancelled by ops$"):
            runner._run_process(tmp_path / "spec.json", tmp_path / job.id)
        assert runner.cancel(job.id) is False  # a purge's stop needs a process to end
    finally:
        store.close()
