"""kill -9 of a real ``loopserve serve`` process, then a restart on the same state directory.

(a) every sample AddSamples acknowledged is there after the restart; (b) a fine-tune running at
the kill leaves no job process behind (it dies with its server) and no staging directory after
the restart, and the policy retries it. (c), a kill during promotion, is covered on the
registry, with a real kill -9, in tests/registry/test_crash_recovery.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import TINY_LABELS, TINY_MODEL, tiny_rows, write_tiny_definition
from test_cli import ServerProcess
from waiting import wait_until

from service.api.adaptation_client import AdaptationClient
from service.domain.loop import JOB_PARENT_PID_ENV, JobState, NewSample
from service.registry import ModelRegistry

pytestmark = pytest.mark.slow

ADAPTATION = """
[adaptation]
min_new_samples = {min_new}
max_retries = 1
backoff_seconds = 0
settle_seconds = 0
epochs = 2
anchor_size = 20
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def staging_dirs(state_dir: Path) -> list[Path]:
    root = ModelRegistry(state_dir, TINY_MODEL).root
    return sorted(p for p in root.iterdir() if p.name.startswith("staging-"))


@pytest.fixture
def models(tmp_path: Path, tiny_backbone: Path) -> Callable[[int], Path]:
    def write(min_new: int) -> Path:
        directory = tmp_path / "models"
        extra = ADAPTATION.format(min_new=min_new)
        write_tiny_definition(directory, tiny_backbone, extra_toml=extra)
        return directory

    return write


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)


def kill_9(server: ServerProcess) -> None:
    server.proc.kill()
    assert server.proc.wait(10) == -9


def test_samples_acknowledged_before_a_kill_9_are_there_after_the_restart(
    models: Callable[[int], Path], state_dir: Path, servers: list[ServerProcess]
) -> None:
    models_dir = models(100_000)  # no job: only the samples matter here
    first = ServerProcess(models_dir, state_dir)
    servers.append(first)
    address = f"127.0.0.1:{first.grpc_port}"
    acknowledged: list[NewSample] = []
    stop = threading.Event()

    def post() -> None:
        with AdaptationClient(address, timeout=10) as client:
            for i in range(10_000):
                batch = [
                    NewSample(f"hello text {i} {j}", TINY_LABELS[j % 3], id=f"s-{i}-{j}")
                    for j in range(20)
                ]
                try:
                    client.add_samples(TINY_MODEL, batch)
                except Exception:  # the server died during the call: not acknowledged
                    return
                acknowledged.extend(batch)  # only after the reply
                if stop.is_set():
                    return

    poster = threading.Thread(target=post)
    poster.start()
    wait_until(lambda: len(acknowledged) >= 200, 60, "200 acknowledged samples")
    kill_9(first)  # with a call most likely in flight
    stop.set()
    poster.join(30)

    second = ServerProcess(models_dir, state_dir)
    servers.append(second)
    with AdaptationClient(f"127.0.0.1:{second.grpc_port}", timeout=30) as client:
        status = client.model_status(TINY_MODEL)
        assert status.samples_since_version >= len(acknowledged)
        for start in range(0, len(acknowledged), 1000):
            chunk = acknowledged[start : start + 1000]
            outcome = client.add_samples(TINY_MODEL, chunk)
            # Posted again with the same ids: every one is already stored.
            assert (outcome.accepted, outcome.duplicates) == (0, len(chunk))
    assert second.stop() == 0


def test_a_kill_9_during_a_fine_tune_leaves_no_job_process_and_no_staging(
    models: Callable[[int], Path], state_dir: Path, servers: list[ServerProcess]
) -> None:
    models_dir = models(100_000)
    first = ServerProcess(models_dir, state_dir)
    servers.append(first)
    with AdaptationClient(f"127.0.0.1:{first.grpc_port}", timeout=30) as client:
        client.add_samples(TINY_MODEL, [NewSample(t, label) for t, label in tiny_rows(10, seed=7)])
        job = client.start_fine_tune(TINY_MODEL, "to be interrupted")
    record_file = state_dir / "jobs" / job.id / "process.json"
    wait_until(record_file.is_file, 60, "the job process to start")
    pid = int(json.loads(record_file.read_text())["pid"])
    assert alive(pid)
    assert staging_dirs(state_dir), "the job writes into a staging directory"

    kill_9(first)

    # The job process dies with its server (PR_SET_PDEATHSIG), restart or not, unfinished.
    wait_until(lambda: not alive(pid), 30, f"job process {pid} to die with its server")
    assert not (record_file.parent / "result.json").exists()
    left = set(staging_dirs(state_dir))
    assert left, "a kill -9 cleans nothing up by itself"

    second = ServerProcess(models_dir, state_dir)
    servers.append(second)
    # Removed before the server reported ready (the retried job may already be writing its own).
    assert not left & set(staging_dirs(state_dir))
    with AdaptationClient(f"127.0.0.1:{second.grpc_port}", timeout=30) as client:
        interrupted = client.get_job(job.id)
        assert interrupted.state is JobState.FAILED
        assert interrupted.error == "interrupted: the server stopped while the job ran"

        def retried() -> bool:
            latest = client.model_status(TINY_MODEL).job
            return latest is not None and latest.id != job.id and latest.state.finished

        wait_until(retried, 240, "the retry to finish")
        retry = client.model_status(TINY_MODEL).job
        assert retry is not None and retry.trigger == "retry" and retry.attempt == 2
        assert retry.state in (JobState.PROMOTED, JobState.REJECTED), retry.error
    assert staging_dirs(state_dir) == []
    assert second.stop() == 0
    log = "".join(second.log)
    assert "left behind by a process that stopped while writing" in log
    assert f"fine-tune job {job.id} of {TINY_MODEL}: interrupted" in log


# A server stand-in: starts a "job" that sets up like a real one (its own session, the parent
# pid in the environment, _die_with_parent first), prints the job's pid, then waits.
PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen(
    [sys.executable, "-c", sys.argv[1]], start_new_session=True,
    env={**os.environ, sys.argv[2]: str(os.getpid())},
)
print(child.pid, flush=True)
time.sleep(120)
"""
JOB = """
import sys, time
from service.training._finetune import _die_with_parent
_die_with_parent()
print("armed", file=sys.stderr, flush=True)
time.sleep(120)
"""


def test_a_job_process_dies_with_its_parent_killed_by_sigkill(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    with log.open("w") as output:
        parent = subprocess.Popen(
            [sys.executable, "-c", PARENT, JOB, JOB_PARENT_PID_ENV],
            stdout=subprocess.PIPE, stderr=output, text=True, cwd=Path(__file__).parents[1],
        )  # fmt: skip
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        wait_until(lambda: "armed" in log.read_text() or not alive(child), 60, "the job to arm")
        assert alive(child), log.read_text()
        parent.send_signal(signal.SIGKILL)
        assert parent.wait(10) == -signal.SIGKILL
        wait_until(lambda: not alive(child), 10, "the job to die with its parent")
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
