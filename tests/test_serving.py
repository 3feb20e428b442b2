"""Hot swap under concurrent load, restart from the current pointer, failed loads, retired
versions' sessions freed."""

from __future__ import annotations

import dataclasses
import shutil
import threading
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import TINY_LABELS, TINY_MODEL, RunningApp
from tasks.image.tiny_image_model import publish_version, write_definition
from waiting import wait_until

from service import serving as serving_module
from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.config import load_model_definition
from service.errors import Conflict
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.runtime import SessionOptions, live_sessions
from service.serving import ServedModel

CLIENTS = 8


def request(i: int) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=TINY_MODEL, id=str(i))
    texts = [b"hello team", b"why is it late", b"my order is broken"][: 1 + i % 3]
    tensor = message.inputs.add(name="text", datatype="BYTES", shape=[len(texts)])
    tensor.contents.bytes_contents.extend(texts)
    return message


def check_response(i: int, response: pb.ModelInferResponse) -> str:
    assert response.id == str(i)
    n = 1 + i % 3
    probs = np.frombuffer(response.raw_output_contents[1], dtype="<f4").reshape(n, len(TINY_LABELS))
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    return str(response.model_version)


@pytest.mark.slow
def test_repeated_hot_swaps_under_load_fail_no_request(server: RunningApp) -> None:
    served = server.app.models[TINY_MODEL]
    stop = threading.Event()
    versions: Counter[str] = Counter()
    failures: list[BaseException] = []
    lock = threading.Lock()

    def client(worker: int) -> None:
        with grpc.insecure_channel(server.address) as channel:
            stub = GRPCInferenceServiceStub(channel)
            i = worker
            while not stop.is_set():
                try:
                    version = check_response(i, stub.ModelInfer(request(i), timeout=10))
                    with lock:
                        versions[version] += 1
                except BaseException as exc:
                    with lock:
                        failures.append(exc)
                i += CLIENTS

    def answered() -> int:
        with lock:
            return sum(versions.values())

    threads = [threading.Thread(target=client, args=(w,)) for w in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: answered() >= CLIENTS, 30, "the clients' first answers")
        for swap in range(10):
            served.activate(2 if swap % 2 == 0 else 1)
            since = answered()  # each version answers a round of requests before the next swap
            wait_until(lambda since=since: answered() >= since + CLIENTS, 30, "answers")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    assert versions["1"] > 0 and versions["2"] > 0
    assert set(versions) == {"1", "2"}
    assert ModelRegistry(server.app.settings.state_dir, TINY_MODEL).current().version == 1


def test_restart_serves_the_version_current_points_to(start_app: object) -> None:
    first: RunningApp = start_app()
    first.app.models[TINY_MODEL].activate(2)
    first.stop()
    second: RunningApp = start_app()
    with grpc.insecure_channel(second.address) as channel:
        response = GRPCInferenceServiceStub(channel).ModelInfer(request(0))
    assert response.model_version == "2"


def test_failed_load_keeps_serving_the_old_version(server: RunningApp) -> None:
    served = server.app.models[TINY_MODEL]
    registry = ModelRegistry(server.app.settings.state_dir, TINY_MODEL)
    registry.get(2).serving_file.write_bytes(b"not an onnx graph")  # int8 or fp32
    with pytest.raises(Exception, match=r"(?i)protobuf|parse|load|invalid"):
        served.activate(2)
    assert registry.current().version == 1
    with grpc.insecure_channel(server.address) as channel:
        assert GRPCInferenceServiceStub(channel).ModelInfer(request(0)).model_version == "1"
    body = server.app.metrics.registry.get_sample_value(
        "loopserve_model_swaps_total", {"model": TINY_MODEL, "outcome": "failed"}
    )
    assert body == 1.0


def test_missing_version_refuses_to_start(start_app: object, tmp_path: object) -> None:
    from service.errors import Unavailable

    with pytest.raises(Unavailable, match="loopserve init tiny"):
        start_app(state_dir=Path(str(tmp_path)) / "empty")


def test_swaps_and_rollbacks_free_the_retired_sessions(tmp_path: Path) -> None:
    name = "swapped"
    models_dir, state_dir = tmp_path / "models", tmp_path / "state"
    write_definition(models_dir, name, size=8)
    publish_version(state_dir, name, size=8)
    registry = ModelRegistry(state_dir, name)
    for _ in range(2):  # versions 2 and 3: the same graph
        with registry.stage(parent=1) as staged:
            shutil.copy(registry.get(1).serving_file, staged.path / "model.onnx")
            registry.publish(staged, registry.get(1).meta)
    served = ServedModel(load_model_definition(models_dir, name), registry, Metrics())
    served.start()
    try:
        for version, serving in ((2, 1), (3, 2), (1, 3), (2, 1)):  # promotions, rollbacks
            served.activate(version, expected=serving)
            assert [v for model, v in live_sessions() if model == name] == [version]
        with pytest.raises(Conflict):  # loaded and warmed, but the head had moved: not served
            served.activate(3, expected=1)
        assert [v for model, v in live_sessions() if model == name] == [2]
    finally:
        served.stop(5)


def test_a_served_version_runs_with_its_definitions_thread_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "spinning"
    models_dir, state_dir = tmp_path / "models", tmp_path / "state"
    write_definition(models_dir, name, size=8)
    publish_version(state_dir, name, size=8)
    definition = load_model_definition(models_dir, name)
    serving = dataclasses.replace(definition.serving, thread_spin_us=37, intra_op_threads=1)
    opened: list[SessionOptions] = []
    real_open = serving_module.tasks.open_version

    def recording_open(model: str, info: object, options: SessionOptions) -> object:
        opened.append(options)
        return real_open(model, info, options)  # type: ignore[arg-type]

    monkeypatch.setattr(serving_module.tasks, "open_version", recording_open)
    served = ServedModel(
        dataclasses.replace(definition, serving=serving), ModelRegistry(state_dir, name), Metrics()
    )
    served.start()
    served.stop(5)

    assert [(o.intra_op_threads, o.thread_spinning, o.spin_duration_us) for o in opened] == [
        (1, True, 37)
    ]
