from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_LABELS, TINY_MODEL, tiny_rows, write_csv

from service import tasks
from service.config import load_model_definition
from service.domain.versions import DataCounts
from service.errors import ConfigError
from service.registry import ModelRegistry
from service.runtime import SessionOptions
from service.tasks.text import create_definition
from service.training import build_first_version


def test_built_version_has_every_file_and_meta(built_state: Path) -> None:
    info = ModelRegistry(built_state, TINY_MODEL).get(1)
    for name in ("model.onnx", "weights.safetensors", "tokenizer.json", "meta.json"):
        assert (info.path / name).is_file(), name
    assert list(info.meta.labels) == TINY_LABELS
    assert info.meta.parent is None
    assert info.meta.metrics["parity_max_abs_diff"] < 1e-3
    assert info.meta.data == DataCounts(
        seed_rows=60, train=48, validation=12, label_name_examples=3
    )
    assert info.meta.digest.startswith("sha256:")
    assert ModelRegistry(built_state, TINY_MODEL).verify(info)


def test_version_records_a_calibration_fitted_on_the_validation_rows(built_state: Path) -> None:
    meta = ModelRegistry(built_state, TINY_MODEL).get(1).meta
    calibration = meta.calibration
    assert calibration is not None
    assert 0.05 <= calibration.temperature <= 20
    assert calibration.rows == meta.data.validation == 12
    assert calibration.source == "validation"
    # Fitted on the selected model before the refit trained on those rows: its accuracy is the
    # held-out one, not the refit model's on rows it has seen.
    assert calibration.accuracy == pytest.approx(meta.metrics["validation_accuracy"])
    assert "calibration" not in meta.to_dict()["train"]


def test_first_version_becomes_current_and_second_records_parent(built_state: Path) -> None:
    registry = ModelRegistry(built_state, TINY_MODEL)
    assert registry.current() is not None and registry.current().version == 1
    assert registry.get(2).meta.parent == 1


def test_version_learns_the_seed_task(built_state: Path) -> None:
    info = ModelRegistry(built_state, TINY_MODEL).get(1)
    loaded = tasks.open_version(TINY_MODEL, info, SessionOptions(providers="cpu"))
    rows = tiny_rows(per_label=10, seed=99)
    predicted = loaded.predict([t for t, _ in rows]).probabilities.argmax(1)
    accuracy = np.mean(
        [info.labels[p] == label for p, (_, label) in zip(predicted, rows, strict=True)]
    )
    assert accuracy >= 0.9


def test_onnx_has_dynamic_batch_and_sequence(built_state: Path) -> None:
    import onnx

    graph = onnx.load(str(ModelRegistry(built_state, TINY_MODEL).get(1).path / "model.onnx")).graph
    dims = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in graph.input
    }
    assert dims["input_ids"] == ["batch", "sequence"]
    assert [o.name for o in graph.output] == ["probabilities", "embedding"]


def test_int8_serves_by_default_behind_its_check_on_held_out_rows(built_state: Path) -> None:
    info = ModelRegistry(built_state, TINY_MODEL).get(1)
    check = info.meta.int8
    assert check is not None and check.accepted and check.reason == ""
    assert (check.rows, check.split, check.max_drop) == (12, "validation", 0.01)
    assert check.drop == pytest.approx(check.fp32_accuracy - check.int8_accuracy)
    assert info.meta.serving_file == "model.int8.onnx" and info.serving_file.is_file()
    assert set(info.meta.to_dict()["int8"]) == {
        "fp32_accuracy", "int8_accuracy", "accepted", "drop", "max_drop", "rows", "split", "reason"
    }  # fmt: skip


def test_int8_off_serves_fp32_without_a_check(tmp_path: Path, tiny_backbone: Path) -> None:
    from conftest import write_tiny_definition

    write_tiny_definition(tmp_path / "models", tiny_backbone, int8=False)
    definition = load_model_definition(tmp_path / "models", TINY_MODEL)
    info = build_first_version(
        definition, ModelRegistry(tmp_path / "state", TINY_MODEL), progress=lambda _: None
    )
    assert info.meta.int8 is None and info.meta.serving_file == "model.onnx"
    assert not (info.path / "model.int8.onnx").exists()


def test_init_from_csv_writes_definition(tmp_path: Path, tiny_backbone: Path) -> None:
    data = write_csv(tmp_path / "data.csv", tiny_rows())
    definition = create_definition(tmp_path / "models", "from-csv", data)
    assert definition.labels == ("complaint", "greeting", "question")
    assert (tmp_path / "models" / "from-csv" / "seed.csv").read_text() == data.read_text()
    with pytest.raises(ConfigError, match="already exists"):
        create_definition(tmp_path / "models", "from-csv", data)


def test_seed_label_outside_definition_is_rejected(tmp_path: Path, tiny_backbone: Path) -> None:
    from conftest import write_tiny_definition

    directory = write_tiny_definition(tmp_path / "models", tiny_backbone)
    write_csv(directory / "seed.csv", [*tiny_rows(), ("what is this", "mystery")])
    definition = load_model_definition(tmp_path / "models", TINY_MODEL)
    with pytest.raises(ConfigError, match="mystery"):
        build_first_version(
            definition, ModelRegistry(tmp_path / "state", TINY_MODEL), progress=lambda _: None
        )
    assert not (tmp_path / "state" / "models" / TINY_MODEL / "versions").exists() or not any(
        (tmp_path / "state" / "models" / TINY_MODEL / "versions").iterdir()
    )


def test_builds_are_reproducible(tmp_path: Path, tiny_definition: object) -> None:
    from safetensors.numpy import load_file

    first = build_first_version(
        tiny_definition, ModelRegistry(tmp_path / "a", TINY_MODEL), progress=lambda _: None
    )
    second = build_first_version(
        tiny_definition, ModelRegistry(tmp_path / "b", TINY_MODEL), progress=lambda _: None
    )
    a, b = (
        load_file(str(first.path / "weights.safetensors")),
        load_file(str(second.path / "weights.safetensors")),
    )
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
