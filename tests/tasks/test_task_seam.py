"""The seam: a task registered from outside ``service`` (the toy vector task of
``vector_task``, whose input is an FP32 vector) is served, predicted, labeled and initialised
through the registry alone, with no other edit: the server decodes its requests and validates its
samples through its contract, and the command asks its client side."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import RunningApp
from tasks import vector_task
from tasks.vector_task import LABELS, NAME, VectorTask

from service import tasks
from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.cli import main
from service.config import ServerSettings, load_model_definition
from service.metrics import Metrics
from service.registry import ModelRegistry

MODEL = "points"


@pytest.fixture
def vector_registered() -> Iterator[None]:
    tasks.register(VectorTask())
    yield
    del tasks._TASKS[NAME]


def _seed(path: Path) -> Path:
    path.write_text('vector,label\n"1,0,0",x\n"0,1,0",y\n"0,0,1",z\n', encoding="utf-8")
    return path


@pytest.fixture
def vector_server(vector_registered: None, tmp_path: Path) -> Iterator[RunningApp]:
    models, state = tmp_path / "models", tmp_path / "state"
    side = tasks.get(NAME).client()
    definition = side.create_definition(models, MODEL, _seed(tmp_path / "seed.csv"))
    vector_task.build_first_version(definition, ModelRegistry(state, MODEL), progress=print)
    settings = ServerSettings(
        models=(MODEL,), models_dir=models, state_dir=state, host="127.0.0.1",
        grpc_port=0, metrics_port=0, drain_seconds=2.0,
    )  # fmt: skip
    app = RunningApp(settings, Metrics())
    yield app
    app.stop()


def test_the_registry_lists_a_registered_task_for_every_lookup(vector_registered: None) -> None:
    assert NAME in tasks.names()
    assert tasks.by_option("vector").name == NAME
    assert tasks.recognising(lambda side: side.recognises_payloads(["1,2,3"])).name == NAME
    assert tasks.recognising(lambda side: side.recognises_payloads(["a text"])).name == (
        "text-classification"
    )


def test_the_server_serves_it_and_decodes_its_requests_through_its_contract(
    vector_server: RunningApp,
) -> None:
    with grpc.insecure_channel(vector_server.address) as channel:
        stub = GRPCInferenceServiceStub(channel)
        metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL), timeout=20)
        assert metadata.properties["task"] == NAME
        assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
            ("vector", "FP32", [-1, 3])
        ]
        wrong = pb.ModelInferRequest(model_name=MODEL)
        wrong.inputs.add(name="vector", datatype="FP32", shape=[1, 2])
        wrong.raw_input_contents.append(np.zeros((1, 2), np.float32).tobytes())
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(wrong, timeout=20)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'vector' is FP32 [1, 2]; send one input tensor named 'vector', FP32 [n,3]" in (
        refused.value.details() or ""
    )


def test_predict_asks_the_served_models_task(
    vector_server: RunningApp, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", "2,0,0", "0,1,0.1", "0,0,3", "--addr", vector_server.address]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [(label, name) for label, _, name in lines] == [
        ("x", "2,0,0"), ("y", "0,1,0.1"), ("z", "0,0,3")
    ]  # fmt: skip
    assert main(["predict", "1,1,5", "--json", "--addr", vector_server.address]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["vector"] == "1,1,5" and row["label"] == "z"
    assert set(row["probabilities"]) == set(LABELS)
    assert main(["predict", "1,2", "--addr", vector_server.address]) == 1
    assert "loopserve: INVALID_ARGUMENT: input 'vector' is FP32 [1, 2]" in capsys.readouterr().err


def test_label_reads_its_file_and_the_server_validates_its_samples(
    vector_server: RunningApp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text('vector,label\n"0.9,0.1,0",x\n"0,0,2",z\n', encoding="utf-8")
    assert main(["label", str(labels), "--addr", vector_server.address]) == 0
    assert capsys.readouterr().out.strip() == f"{MODEL}: 2 accepted, 0 duplicates (2 vectors)"
    assert main(["label", str(labels), "--addr", vector_server.address]) == 0
    assert "0 accepted, 2 duplicates" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text('vector,label\n"1,2",x\n', encoding="utf-8")
    assert main(["label", str(bad), "--addr", vector_server.address]) == 1
    assert (
        "loopserve: INVALID_ARGUMENT: sample[0]: '1,2' is not 3 finite comma-separated numbers"
        in capsys.readouterr().err
    )


@pytest.mark.slow  # `loopserve init` imports service.training, which loads torch
def test_init_creates_and_builds_a_model_of_the_task(
    vector_registered: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models, state = tmp_path / "models", tmp_path / "state"
    data = _seed(tmp_path / "seed.csv")
    init = ["init", MODEL, "--task", "vector", "--data", str(data)]
    assert main([*init, "--models-dir", str(models), "--state-dir", str(state)]) == 0
    assert f"published {MODEL} version 1" in capsys.readouterr().out
    definition = load_model_definition(models, MODEL)
    assert definition.task == NAME and list(definition.labels) == list(LABELS)
    current = ModelRegistry(state, MODEL).current()
    assert current is not None and current.meta.task == NAME
