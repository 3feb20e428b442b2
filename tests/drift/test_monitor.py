"""Drift monitoring in a running server: calibration, scoring, alarms, candidates, persistence."""

from __future__ import annotations

import asyncio
import csv
import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
import pytest
import waiting
from conftest import (
    FILLER,
    TINY_MODEL,
    UNSEEN,
    RunningApp,
    tiny_rows,
    write_tiny_definition,
)
from test_detectors import one_torch_thread  # noqa: F401 (autouse)

from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.api.adaptation_client import AdaptationClient
from service.api.client import ClientError
from service.cli import main
from service.config import DriftRecipe
from service.domain.loop import EventKind
from service.domain.versions import DEFAULT_TASK
from service.drift import DetectorState, DetectorStatus, DriftMonitor, DriftStatus
from service.metrics import Metrics
from service.runtime import BatchResult

# The embedding detector on the training reference (ready before traffic), the others on early
# traffic; a budget of one false alarm per hour at one request per second keeps the window
# levels at their 0.05 cap, so that a few dozen shifted requests are enough.
DRIFT = """detectors = ["embedding", "confidence", "labels"]
embedding_reference = "training"
embedding_dims = 8
window_size = 10
test_window_size = 20
reference_size = 60
false_alarm_every_hours = 1.0
traffic_rate = 1.0
sustain_windows = 2
"""


def in_distribution(count: int, seed: int) -> list[str]:
    rows = tiny_rows(per_label=count // 3 + 1, seed=seed)
    return [text for text, _ in rows][:count]


def shifted(count: int, seed: int) -> list[str]:
    """Texts made of words the model never saw in training."""
    rng = random.Random(seed)
    return [" ".join(rng.sample(UNSEEN, 3) + rng.sample(FILLER, 1)) for _ in range(count)]


def send(address: str, texts: list[str], prefix: str) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = GRPCInferenceServiceStub(channel)
        for i, text in enumerate(texts):
            request = pb.ModelInferRequest(model_name=TINY_MODEL, id=f"{prefix}{i}")
            tensor = request.inputs.add(name="text", datatype="BYTES", shape=[1])
            tensor.contents.bytes_contents.append(text.encode())
            stub.ModelInfer(request, timeout=10)


def wait_for(
    server: RunningApp, predicate: Callable[[DriftStatus], bool], timeout: float = 60
) -> DriftStatus:
    drift = server.app.drift
    assert drift is not None
    return waiting.wait_for(lambda: drift.status(TINY_MODEL), predicate, timeout, "drift status")


def states(status: DriftStatus) -> dict[str, DetectorState]:
    return {d.detector: d.state for d in status.detectors}


def all_ready(status: DriftStatus) -> bool:
    return len(status.detectors) == 3 and all(
        d.state is DetectorState.READY for d in status.detectors
    )


@pytest.fixture
def drift_models(tmp_path: Path, tiny_backbone: Path) -> Path:
    models = tmp_path / "models"
    write_tiny_definition(models, tiny_backbone, drift=DRIFT)
    return models


@pytest.fixture
def drift_server(start_app: Any, drift_models: Path) -> RunningApp:
    server: RunningApp = start_app(models_dir=drift_models)
    return server


def test_detectors_calibrate_on_training_data_and_on_early_traffic(
    drift_server: RunningApp,
) -> None:
    status = wait_for(drift_server, lambda s: states(s).get("embedding") is DetectorState.READY)
    by_name = {d.detector: d for d in status.detectors}
    assert by_name["embedding"].reference_source == "training"
    assert by_name["embedding"].reference_size == 60
    assert by_name["embedding"].calibration_seconds is not None
    assert by_name["confidence"].state is DetectorState.CALIBRATING
    assert by_name["confidence"].message.startswith("collecting traffic reference: 0/60")
    send(drift_server.address, in_distribution(60, seed=1), "ref")
    status = wait_for(drift_server, all_ready)
    assert {d.reference_source for d in status.detectors if d.detector != "embedding"} == {
        "traffic"
    }
    assert status.version == 1 and not status.alarm


def test_a_domain_shift_raises_the_alarm_event_metric_and_adaptation_need(
    drift_server: RunningApp, metrics: Metrics
) -> None:
    app = drift_server.app
    assert app.adaptation is not None
    events: list[Any] = []

    async def watch() -> None:
        assert app.adaptation is not None
        async for event in app.adaptation.watch_events(TINY_MODEL):
            events.append(event)
            if event.kind is EventKind.DRIFT_ALARM_RAISED:
                return

    watcher = asyncio.run_coroutine_threadsafe(watch(), drift_server.loop)
    wait_for(drift_server, lambda s: states(s).get("embedding") is DetectorState.READY)
    send(drift_server.address, in_distribution(60, seed=1), "ref")
    wait_for(drift_server, all_ready)
    send(drift_server.address, in_distribution(40, seed=2), "in")
    status = wait_for(drift_server, lambda s: all(d.samples_seen >= 40 for d in s.detectors))
    assert not status.alarm, status
    send(drift_server.address, shifted(60, seed=3), "shift")
    status = wait_for(drift_server, lambda s: s.alarm)
    alarmed = [d for d in status.detectors if d.alarm]
    assert alarmed and all(d.budgeted and d.effect >= d.min_effect for d in alarmed)
    watcher.result(timeout=10)
    raised = events[-1]
    assert set(raised.attributes["detector"].split(", ")) <= {d.detector for d in alarmed}
    signals = [e for e in events if e.kind is EventKind.DRIFT_SIGNAL_RAISED]
    assert {e.attributes["detector"] for e in signals} >= {d.detector for d in alarmed}
    assert all(float(e.attributes["statistic"]) > float(e.attributes["threshold"]) for e in signals)
    sample = metrics.registry.get_sample_value
    detector = alarmed[0].detector
    assert sample("loopserve_drift_alarm", {"model": TINY_MODEL}) == 1
    labels = {"model": TINY_MODEL, "detector": detector}
    assert sample("loopserve_drift_detector_alarm", labels) == 1
    assert 0 <= (sample("loopserve_drift_effect", labels) or -1) <= 1
    assert sample("loopserve_drift_traffic_rate", {"model": TINY_MODEL}) == 1.0
    estimated = sample("loopserve_estimated_accuracy", {"model": TINY_MODEL, "version": "1"})
    assert estimated is not None and 0 < estimated <= 1
    # The embedding detector (training reference) scored all 160 requests, the others the 100
    # that followed their traffic reference.
    wait_for(drift_server, lambda s: sum(d.samples_seen for d in s.detectors) == 160 + 2 * 100)
    for name, count in (("embedding", 160), ("confidence", 100), ("labels", 100)):
        labels = {"model": TINY_MODEL, "detector": name}
        assert sample("loopserve_drift_samples_scored_total", labels) == count
    state = {"model": TINY_MODEL, "detector": "embedding", "state": "ready"}
    assert sample("loopserve_drift_state", state) == 1
    with AdaptationClient(drift_server.address) as client:
        assert client.model_status(TINY_MODEL).needs_adaptation
        remote = client.drift_status(TINY_MODEL)
    assert remote.alarm and remote.enabled
    assert [d.detector for d in remote.detectors] == ["confidence", "embedding", "labels"]
    assert math.isfinite(remote.detectors[1].statistic)
    assert remote.false_alarm_every_hours == 1.0 and remote.traffic_rate == 1.0
    assert 0 < remote.estimated_accuracy <= 1


def test_candidates_are_the_least_confident_and_most_atypical_recent_inputs(
    drift_server: RunningApp,
) -> None:
    wait_for(drift_server, lambda s: states(s).get("embedding") is DetectorState.READY)
    send(drift_server.address, in_distribution(30, seed=1), "in")
    send(drift_server.address, shifted(10, seed=3), "odd")
    assert drift_server.app.drift is not None
    pool = drift_server.app.drift.pools[TINY_MODEL]
    waiting.wait_until(lambda: len(pool) >= 40, 10, "40 candidates in the pool")
    with AdaptationClient(drift_server.address) as client:
        assert len(client.labeling_candidates(TINY_MODEL, 10)) == 10
        candidates = client.labeling_candidates(TINY_MODEL, 100)
        assert len(candidates) == 40
        assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)
        assert all(math.isfinite(c.atypicality) for c in candidates)
        # Ranking quality is the pool's own test (tests/drift/test_candidates.py) and the drift
        # benchmark's; a random tiny backbone gives no meaningful notion of "atypical".
        with pytest.raises(ClientError) as error:
            client.labeling_candidates(TINY_MODEL, -1)
        assert error.value.code == "INVALID_ARGUMENT"
        assert "count must be in [0, 1000]" in str(error.value)
        with pytest.raises(ClientError) as error:
            client.drift_status("nope")
        assert error.value.code == "NOT_FOUND"


def test_candidates_go_out_to_a_csv_and_come_back_labeled(
    drift_server: RunningApp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wait_for(drift_server, lambda s: states(s).get("embedding") is DetectorState.READY)
    send(drift_server.address, shifted(8, seed=5), "odd")
    assert drift_server.app.drift is not None
    pool = drift_server.app.drift.pools[TINY_MODEL]
    waiting.wait_until(lambda: len(pool) >= 8, 10, "8 candidates in the pool")
    out = tmp_path / "candidates.csv"
    addr = ["--addr", drift_server.address, "--model", TINY_MODEL]
    assert main(["candidates", *addr, "--out", str(out), "--count", "5", "--json"]) == 0
    fields = {"prediction_id", "text", "version", "predicted_label", "confidence", "atypicality"}
    assert [set(c) for c in json.loads(capsys.readouterr().out)] == [fields | {"score"}] * 5
    assert main(["candidates", *addr, "--out", str(out), "--count", "5"]) == 0
    assert "wrote 5 candidates" in capsys.readouterr().out
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 and all(r["label"] == "" and r["prediction_id"] for r in rows)
    assert main(["label", *addr, str(out)]) == 2
    assert "empty label" in capsys.readouterr().err
    for row in rows[:3]:
        row["label"] = "complaint"
    rewrite_csv(out, rows)
    assert main(["label", *addr, str(out), "--skip-unlabeled", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accepted"] == 3
    labeled = {r["prediction_id"] for r in rows[:3]}
    with AdaptationClient(drift_server.address) as client:
        remaining = {c.prediction_id for c in client.labeling_candidates(TINY_MODEL, 100)}
    assert len(remaining) == 5 and not remaining & labeled
    assert drift_server.app.adaptation is not None


def rewrite_csv(path: Path, rows: list[dict[str, str]]) -> None:
    """A candidates CSV as a labeler saves it back."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_calibrations_are_saved_and_reused_after_a_restart(
    start_app: Any, drift_models: Path, state_dir: Path
) -> None:
    first: RunningApp = start_app(models_dir=drift_models)
    wait_for(first, lambda s: states(s).get("embedding") is DetectorState.READY)
    send(first.address, in_distribution(60, seed=1), "ref")
    wait_for(first, all_ready)
    first.stop()
    saved = sorted(p.name.split("-")[1] for p in (state_dir / "drift" / TINY_MODEL).glob("*.pkl"))
    assert saved == ["confidence", "embedding", "labels"]
    second: RunningApp = start_app(models_dir=drift_models)
    status = wait_for(second, all_ready, timeout=20)
    assert {d.message for d in status.detectors} == {"calibration loaded from disk"}


def test_a_new_serving_version_gets_its_own_reference(drift_server: RunningApp) -> None:
    wait_for(drift_server, lambda s: states(s).get("embedding") is DetectorState.READY)
    drift_server.app.models[TINY_MODEL].activate(2)
    status = wait_for(
        drift_server,
        lambda s: (
            s.version == 2
            and {d.version for d in s.detectors} == {2}
            and states(s)["embedding"] is DetectorState.READY
        ),
    )
    assert not status.alarm


def test_drift_off_reports_disabled(server: RunningApp) -> None:
    with AdaptationClient(server.address) as client:
        status = client.drift_status(TINY_MODEL)
        assert not status.enabled and status.detectors == []
        assert client.labeling_candidates(TINY_MODEL, 5) == []


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    metrics = Metrics()
    definition = SimpleNamespace(name="m", task=DEFAULT_TASK, drift=DriftRecipe(queue_size=2))
    served = SimpleNamespace(definition=definition, serving_version=None)
    monitor = DriftMonitor(
        {"m": served},
        tmp_path,
        metrics,
        reference_texts=lambda *_: [],
    )
    result = BatchResult(
        1, ["a", "b"], np.full((3, 2), 0.5, np.float32), np.zeros((3, 4), np.float32), 0.0
    )
    started = time.perf_counter()
    for i in range(5):
        monitor.observe("m", f"r{i}", ["x", "y", "z"], result)
    assert time.perf_counter() - started < 0.1
    assert monitor.status("m").samples_dropped == 9
    assert (
        metrics.registry.get_sample_value("loopserve_drift_samples_dropped_total", {"model": "m"})
        == 9
    )


@pytest.mark.slow
def test_the_worker_runs_in_its_own_process(start_app: Any, drift_models: Path) -> None:
    server: RunningApp = start_app(models_dir=drift_models, drift_in_process=False)
    wait_for(server, lambda s: states(s).get("embedding") is DetectorState.READY, timeout=120)
    worker = server.app.drift._worker if server.app.drift else None
    assert worker is not None and getattr(worker, "pid", None) not in (None,)
    send(server.address, shifted(30, seed=3), "shift")
    wait_for(server, lambda s: any(d.samples_seen >= 30 for d in s.detectors), timeout=30)


def detector_status(name: str, alarm: bool, budgeted: bool = True) -> DetectorStatus:
    return DetectorStatus(
        "m", name, "ks" if budgeted else "mmd", 1, DetectorState.READY, alarm=alarm,
        budgeted=budgeted, samples_seen=100,
    )  # fmt: skip


def test_only_the_model_level_alarm_reaches_the_alarm_hook(tmp_path: Path) -> None:
    """One detector's signal is an event for diagnosis; the hook that marks the model for
    adaptation hears only the model-level alarm, and an online detector never raises it."""
    metrics = Metrics()
    definition = SimpleNamespace(name="m", task=DEFAULT_TASK, drift=DriftRecipe())
    served = SimpleNamespace(definition=definition, serving_version=None)
    monitor = DriftMonitor(
        {"m": served},
        tmp_path,
        metrics,
        reference_texts=lambda *_: [],
    )
    alarms: list[tuple[bool, list[str]]] = []
    signals: list[tuple[str, bool]] = []
    monitor.on_alarm = lambda status, raised: alarms.append(
        (raised, [d.detector for d in status.detectors if d.alarm])
    )
    monitor.on_signal = lambda status, raised: signals.append((status.detector, raised))
    model_alarm = {"model": "m"}
    quiet = [detector_status("confidence", False), detector_status("labels", False)]
    monitor._update("m", [detector_status("embedding", True, budgeted=False), *quiet])
    assert alarms == [] and signals == [("embedding", True)]
    assert metrics.registry.get_sample_value("loopserve_drift_alarm", model_alarm) == 0
    monitor._update("m", [detector_status("embedding", True, budgeted=False),
                          detector_status("confidence", True), quiet[1]])  # fmt: skip
    assert alarms == [(True, ["confidence", "embedding"])]
    assert metrics.registry.get_sample_value("loopserve_drift_alarm", model_alarm) == 1
    assert monitor.status("m").alarm
    monitor._update("m", [detector_status("embedding", True, budgeted=False),
                          detector_status("confidence", True), detector_status("labels", True)])  # fmt: skip
    assert len(alarms) == 1  # still raised: no second event
    monitor._update("m", [detector_status("embedding", False, budgeted=False), *quiet])
    assert alarms[-1] == (False, [])
    assert metrics.registry.get_sample_value("loopserve_drift_alarm", model_alarm) == 0


def test_the_accuracy_estimate_applies_the_version_temperature_over_its_window() -> None:
    from service.calibration import Calibration
    from service.drift._monitor import AccuracyEstimate

    estimate = AccuracyEstimate(window=4)
    assert math.isnan(estimate.value)
    sharp = np.array([[0.9, 0.1], [0.8, 0.2]], np.float32)
    estimate.restart(1, None)  # no calibration recorded: temperature 1
    estimate.add(sharp)
    assert estimate.value == pytest.approx(0.85)
    estimate.restart(2, Calibration(temperature=1e6, rows=10, accuracy=0.5, source="holdout"))
    assert math.isnan(estimate.value)  # a new version starts afresh
    estimate.add(np.tile(sharp, (3, 1)))  # 6 rows, window 4
    assert estimate.value == pytest.approx(0.5, abs=1e-3)  # a huge temperature flattens them
