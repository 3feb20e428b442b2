"""Scale-out on one machine: two serving replicas, trainers and a real PostgreSQL on loopback,
with a temp dir as the shared volume. Each test drives real ``loopserve serve`` processes and
puts steady load on the replicas with a standard V2 client.

The figures the README quotes come from here: run with ``-s`` to see them.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from conftest import ADAPTATION, TINY_MODEL, shifted, write_tiny_definition
from replicas import Deployment, Load, Member
from waiting import wait_until

from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.api.adaptation_client import AdaptationClient
from service.app import LEASE_LOST_EXIT
from service.cli import main
from service.domain.loop import JobState, NewSample
from service.registry import ModelRegistry
from service.store import PostgresStore, VersionRecord

pytestmark = pytest.mark.slow

# A fine-tune of the tiny model that the gate promotes (the same recipe as the single-process
# end-to-end test); one retry, so that a killed trainer's job is retried by the standby.
RECIPE = ADAPTATION.format(min_new=60, lr=3e-4, head_lr=0.02, allow_new="false", settle=0).replace(
    "max_retries = 0", "max_retries = 1"
)
REACH_S = 10.0  # a new head serves on every replica within this
TAKEOVER_S = 30.0  # a standby trainer holds the lease within this after the trainer died


@pytest.fixture
def deployment(tmp_path: Path, tiny_backbone: Path, database_url: str) -> Iterator[Deployment]:
    models = tmp_path / "models"
    write_tiny_definition(models, tiny_backbone, extra_toml=RECIPE)
    shared = tmp_path / "shared"
    assert main(["init", TINY_MODEL, "--models-dir", str(models), "--state-dir", str(shared)]) == 0
    deployment = Deployment(models, shared, tmp_path, database_url)
    yield deployment
    deployment.stop()


@pytest.fixture
def store(database_url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(database_url)
    yield store
    store.close()


def post_labels(member: Member, count: int = 60) -> None:
    samples = [NewSample(text=t, label=label) for t, label in shifted(count, seed=0)]
    with AdaptationClient(member.address) as client:
        outcome = client.add_samples(TINY_MODEL, samples)
    assert outcome.accepted == count


def serving_version(member: Member) -> int:
    with AdaptationClient(member.address) as client:
        return client.model_status(TINY_MODEL).serving_version


def latest_job(member: Member) -> Any:
    with AdaptationClient(member.address) as client:
        return client.model_status(TINY_MODEL).job


def wait_head(store: PostgresStore, version: int, timeout: float) -> float:
    """Block until the head row names ``version``; the Unix time it was first seen."""
    wait_until(lambda: store.head(TINY_MODEL) == version, timeout, f"head {version}")
    return time.time()


def wait_serving(members: list[Member], version: int, since: float) -> list[float]:
    """Seconds from ``since`` (Unix time) until each member serves ``version``."""
    lags = []
    for member in members:
        wait_until(
            lambda m=member: serving_version(m) == version, 60, f"{member.name} on {version}"
        )
        lags.append(time.time() - since)
    return lags


def publish_copy(deployment: Deployment, store: PostgresStore) -> int:
    """A second version whose files are version 1's, published as the trainer would (files
    written once, then the version record): something to move the head to without a job."""
    registry = ModelRegistry(deployment.state_dir, TINY_MODEL)
    one = registry.get(1)
    with registry.stage(parent=1) as staged:
        for path in one.path.iterdir():
            if path.is_file() and path.name != "meta.json":
                shutil.copy2(path, staged.path / path.name)
        info = registry.publish(staged, one.meta)
    store.add_version(
        VersionRecord(TINY_MODEL, info.version, info.meta.digest, "promoted", time.time())
    )
    return info.version


def no_failures(*loads: Load) -> None:
    for load in loads:
        report = load.stop()
        assert report["sent"] > 0
        assert report["failures"] == [], report["failures"][:5]


def test_a_new_version_reaches_both_replicas_and_a_rollback_through_b_too(
    deployment: Deployment, store: PostgresStore
) -> None:
    deployment.start("trainer", "trainer")
    a, b = deployment.start("a", "serving"), deployment.start("b", "serving")
    loads = [Load(a, deployment.root), Load(b, deployment.root)]
    post_labels(a)
    published = wait_head(store, 2, timeout=240)
    promote_lags = wait_serving([a, b], 2, published)

    with AdaptationClient(b.address) as client:
        client.rollback(TINY_MODEL, 1)
    rolled_back = time.time()
    rollback_lags = wait_serving([a, b], 1, rolled_back)
    no_failures(*loads)
    # The trainer records the job's end just after the head moves: wait for that write.
    job = wait_until(
        lambda: (j := latest_job(a)) is not None and j.state.finished and j, 60, "the job's end"
    )
    assert job.state is JobState.PROMOTED and job.candidate_version == 2
    print(
        f"\nnew version serving on replicas a, b: {promote_lags[0]:.2f} s, "
        f"{promote_lags[1]:.2f} s after publish; rollback through b: {rollback_lags[0]:.2f} s, "
        f"{rollback_lags[1]:.2f} s; requests a={loads[0].report['sent']} "
        f"b={loads[1].report['sent']}, 0 failed"
    )
    assert max(promote_lags) <= REACH_S
    assert max(rollback_lags) <= REACH_S
    # The version's first answers came after the publish, never before.
    for load in loads:
        first = load.first_seen(2)
        assert first is not None and first >= published - 1.0


def test_a_standby_trainer_takes_over_and_retries_the_killed_job(deployment: Deployment) -> None:
    active = deployment.start("trainer-1", "trainer")
    active.wait_log("holding the trainer lease", 30)
    standby = deployment.start("trainer-2", "trainer")
    standby.wait_log("standing by", 30)
    a = deployment.start("a", "serving")
    post_labels(a)
    first = wait_until(
        lambda: (j := latest_job(a)) is not None and j.state is JobState.RUNNING and j, 120, "job"
    )
    os.kill(active.proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    took_over = standby.wait_log("holding the trainer lease", TAKEOVER_S + 5) - killed
    retried = wait_until(
        lambda: (j := latest_job(a)) is not None and j.id != first.id and j.state.finished and j,
        240,
        "the retried job",
    )
    print(f"\nstandby trainer took the lease {took_over:.2f} s after kill -9 of the trainer")
    assert took_over <= TAKEOVER_S
    with AdaptationClient(a.address) as client:
        interrupted = client.get_job(first.id)
    assert interrupted.state is JobState.FAILED and "interrupted" in interrupted.error
    assert retried.trigger == "retry" and retried.attempt == 2


def test_a_trainer_whose_session_was_terminated_cannot_publish(
    deployment: Deployment, store: PostgresStore, postgres_server: Any
) -> None:
    # Labels wait in the database while no trainer runs; the trainer starts their job as soon
    # as it holds the lease, and with a long poll it does not notice the lost lease before the
    # job ends: the publish itself must be refused.
    first = deployment.start("trainer-0", "trainer")
    first.wait_log("holding the trainer lease", 30)
    a = deployment.start("a", "serving")
    first.stop()
    post_labels(a)
    deployment.poll_seconds = 60
    trainer = deployment.start("trainer", "trainer")
    wait_until(lambda: (j := latest_job(a)) is not None and j.state is JobState.RUNNING, 120, "job")
    assert postgres_server.terminate("loopserve-trainer") >= 1
    job = wait_until(
        lambda: (j := latest_job(a)) is not None and j.state.finished and j, 240, "job end"
    )
    assert job.state is JobState.FAILED, job
    assert "lease" in job.error
    assert store.head(TINY_MODEL) == 1
    assert serving_version(a) == 1
    assert "lease" in trainer.text()


def test_polling_delivers_a_new_head_while_listen_connections_are_dropped(
    deployment: Deployment, store: PostgresStore, postgres_server: Any, database_url: str
) -> None:
    deployment.start("trainer", "trainer").wait_log("holding the trainer lease", 30)
    a, b = deployment.start("a", "serving"), deployment.start("b", "serving")
    loads = [Load(a, deployment.root), Load(b, deployment.root)]
    version = publish_copy(deployment, store)
    assert store.head(TINY_MODEL) == 1  # the test's own pooled connection is open now
    # No new session may open (existing ones live on): the dropped listeners cannot come back,
    # so no replica can receive the notification; only its poll over a pooled connection can.
    database = urllib.parse.urlsplit(database_url).path.lstrip("/")
    allow_connections(postgres_server, database, False)
    try:
        assert postgres_server.terminate("loopserve-listen") == 3  # trainer, a and b
        assert store.move_head(TINY_MODEL, version, 1)
        moved = time.time()
        lags = [
            wait_until(lambda m=m: served_version(m) == version and time.time() - moved, 30, m.name)
            for m in (a, b)
        ]
        assert listeners(postgres_server, database) == 0
    finally:
        allow_connections(postgres_server, database, True)
    no_failures(*loads)
    print(f"\nby polling alone: on replicas a, b {lags[0]:.2f} s, {lags[1]:.2f} s after the move")
    assert max(lags) <= REACH_S


def allow_connections(server: Any, database: str, allow: bool) -> None:
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS {str(allow).lower()}")


def listeners(server: Any, database: str) -> int:
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
            " AND application_name = 'loopserve-listen'",
            (database,),
        ).fetchone()
    return int(row[0]) if row else 0


def served_version(member: Member) -> int:
    """The version a replica serves, asked without touching the database (ModelMetadata)."""
    with grpc.insecure_channel(member.address) as channel:
        stub = GRPCInferenceServiceStub(channel)
        reply = stub.ModelMetadata(pb.ModelMetadataRequest(name=TINY_MODEL), timeout=5)
    return int(reply.versions[0])


def test_replicas_keep_serving_through_a_database_restart_and_reconnect(
    deployment: Deployment, store: PostgresStore, postgres_server: Any
) -> None:
    trainer = deployment.start("trainer", "trainer")
    trainer.wait_log("holding the trainer lease", 30)
    a, b = deployment.start("a", "serving"), deployment.start("b", "serving")
    loads = [Load(a, deployment.root), Load(b, deployment.root)]
    time.sleep(1)  # the clients' traffic runs on both sides of the restart: part of the scenario
    postgres_server.restart()
    restarted = time.time()
    time.sleep(1)
    no_failures(*loads)  # predictions never touch the database
    # The restart ended the trainer's lock session: it stops, for its supervisor to restart.
    assert trainer.proc.wait(30) == LEASE_LOST_EXIT
    assert "lost the trainer lease" in trainer.text()

    def labels_accepted() -> bool:
        try:
            post_labels(a, count=1)
        except Exception:
            return False
        return True

    wait_until(labels_accepted, 30, "AddSamples after the restart")
    version = publish_copy(deployment, store)
    assert store.move_head(TINY_MODEL, version, 1)
    lags = wait_serving([a, b], version, time.time())
    print(
        f"\nafter a PostgreSQL restart: labels accepted again {time.time() - restarted:.1f} s "
        f"later; a new head on a, b in {lags[0]:.2f} s, {lags[1]:.2f} s"
    )
    assert max(lags) <= REACH_S
