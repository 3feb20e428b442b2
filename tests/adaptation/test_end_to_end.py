"""The loop through a running server: labels posted with ``loopserve label`` lead to a gated new
version that serves while inference traffic continues without a failed request."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import (
    ADAPTATION,
    TINY_LABELS,
    TINY_MODEL,
    RunningApp,
    shifted,
    write_csv,
    write_tiny_definition,
)
from waiting import wait_for, wait_until

from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.api.adaptation_client import AdaptationClient
from service.cli import main
from service.domain.loop import EventKind, JobState

pytestmark = pytest.mark.slow


def infer_request(i: int) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=TINY_MODEL, id=f"r{i}")
    message.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
        b"hello my order"
    )
    return message


def test_labels_posted_with_the_cli_lead_to_a_new_serving_version(
    tmp_path: Path, tiny_backbone: Path, state_dir: Path, start_app: object
) -> None:
    models = tmp_path / "models"
    extra = ADAPTATION.format(min_new=60, lr=3e-4, head_lr=0.02, allow_new="false", settle=0)
    write_tiny_definition(models, tiny_backbone, extra_toml=extra)
    server: RunningApp = start_app(models_dir=models)
    events: list[str] = []

    async def watch() -> None:
        assert server.app.adaptation is not None
        async for event in server.app.adaptation.watch_events(TINY_MODEL):
            events.append(event.kind.value)
            if event.kind is EventKind.JOB_FINISHED:
                return

    watcher = asyncio.run_coroutine_threadsafe(watch(), server.loop)
    stop, failures, versions = threading.Event(), [], set()

    def traffic() -> None:
        with grpc.insecure_channel(server.address) as channel:
            stub, i = GRPCInferenceServiceStub(channel), 0
            while not stop.is_set():
                try:
                    response = stub.ModelInfer(infer_request(i), timeout=10)
                    probabilities = np.frombuffer(response.raw_output_contents[1], dtype="<f4")
                    assert abs(float(probabilities.sum()) - 1) < 1e-4
                    versions.add(response.model_version)
                except Exception as exc:
                    failures.append(exc)
                i += 1

    client = threading.Thread(target=traffic)
    client.start()
    try:
        data = write_csv(tmp_path / "labels.csv", shifted(60, seed=0))
        assert main(["label", str(data), "--addr", server.address, "--model", TINY_MODEL]) == 0
        with AdaptationClient(server.address) as adaptation:
            status = wait_for(
                lambda: adaptation.model_status(TINY_MODEL),
                lambda status: status.job is not None and status.job.state.finished,
                180, "the job to finish",
            )  # fmt: skip
            assert status.job is not None and status.job.state is JobState.PROMOTED, status.job
            assert status.serving_version == 3
            assert [v.status for v in adaptation.list_versions(TINY_MODEL)] == [
                "retired",
                "retired",
                "serving",
            ]
        wait_until(lambda: "3" in versions, 30, "an answer from version 3")
    finally:
        stop.set()
        client.join(30)
    watcher.result(30)
    assert failures == []
    assert {"1", "3"} <= versions
    assert events[:1] == ["samples_accepted"]
    assert {"job_started", "job_finished", "candidate_promoted", "swap"} <= set(events)
    assert server.app.models[TINY_MODEL].serving_version.labels == TINY_LABELS


def test_samples_and_versions_survive_a_restart(
    tmp_path: Path, tiny_backbone: Path, state_dir: Path, start_app: object
) -> None:
    models = tmp_path / "models"
    write_tiny_definition(
        models,
        tiny_backbone,
        extra_toml=ADAPTATION.format(
            min_new=1000, lr=3e-4, head_lr=0.02, allow_new="false", settle=0
        ),
    )
    first: RunningApp = start_app(models_dir=models)
    data = write_csv(tmp_path / "labels.csv", shifted(12, seed=0))
    assert main(["label", str(data), "--addr", first.address, "--model", TINY_MODEL]) == 0
    first.stop()
    second: RunningApp = start_app(models_dir=models)
    with AdaptationClient(second.address) as adaptation:
        assert adaptation.model_status(TINY_MODEL).samples_since_version == 12


def test_a_job_interrupted_by_a_crash_is_failed_and_retried_on_restart(
    tmp_path: Path, tiny_backbone: Path, state_dir: Path, start_app: object
) -> None:
    from service.store import SQLiteStore

    models = tmp_path / "models"
    extra = ADAPTATION.format(
        min_new=1000, lr=3e-4, head_lr=0.02, allow_new="false", settle=0
    ).replace("max_retries = 0", "max_retries = 1")
    write_tiny_definition(models, tiny_backbone, extra_toml=extra)
    store = SQLiteStore(state_dir / "loopserve.db")
    from service.domain.loop import NewSample

    store.add(TINY_MODEL, [NewSample(t, label) for t, label in shifted(30, seed=0)])
    crashed = store.create(TINY_MODEL, "manual", "before the crash", 1, store.last_seq(TINY_MODEL))
    store.update(crashed.id, state=JobState.RUNNING, started=time.time())
    store.close()

    server: RunningApp = start_app(models_dir=models)
    assert server.app.adaptation is not None and server.app.store is not None
    server.app.adaptation.wait_idle(180)
    failed = server.app.store.job(crashed.id)
    assert failed.state is JobState.FAILED and "interrupted" in failed.error
    retry = server.app.store.latest(TINY_MODEL)
    assert retry is not None and retry.trigger == "retry" and retry.attempt == 2
    assert retry.state.finished
