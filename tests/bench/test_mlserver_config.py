"""MLServer's settings files for the serving benchmark's peer run (no MLServer needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.peers.mlserver_config import (
    BATCH_TIME_S,
    IMPLEMENTATION,
    SETUP_SCRIPT,
    PeerConfig,
    RuntimeParameters,
    mlserver_command,
    write_settings,
)

RUNTIME = RuntimeParameters("/state/models/m/versions/3", "model.int8.onnx", 2, True, 100)


def config(max_batch_size: int) -> PeerConfig:
    return PeerConfig("support-intents", 4001, 4002, 4003, RUNTIME, max_batch_size)


def read(path: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def test_settings_serve_in_process_on_the_given_ports(tmp_path: Path) -> None:
    folder = write_settings(tmp_path / "peer", config(16))

    settings = read(folder / "settings.json")
    assert settings["parallel_workers"] == 0
    assert (settings["grpc_port"], settings["http_port"], settings["metrics_port"]) == (
        4001,
        4002,
        4003,
    )
    assert settings["host"] == "127.0.0.1"
    assert settings["debug"] is False
    assert settings["model_repository_root"] == str(folder)
    assert settings["environments_dir"] == str(folder / ".envs")


def test_model_settings_name_the_runtime_and_round_trip_its_parameters(tmp_path: Path) -> None:
    folder = write_settings(tmp_path, config(16))

    model = read(folder / "support-intents" / "model-settings.json")
    assert model["name"] == "support-intents"
    assert model["implementation"] == IMPLEMENTATION
    assert isinstance(model["parameters"], dict)
    assert RuntimeParameters.from_extra(model["parameters"]["extra"]) == RUNTIME


@pytest.mark.parametrize(
    ("max_batch_size", "expected"),
    [(16, (16, BATCH_TIME_S)), (0, (0, 0.0)), (1, (0, 0.0))],
)
def test_adaptive_batching_matches_or_is_off(
    tmp_path: Path, max_batch_size: int, expected: tuple[int, float]
) -> None:
    folder = write_settings(tmp_path, config(max_batch_size))

    model = read(folder / "support-intents" / "model-settings.json")
    assert (model["max_batch_size"], model["max_batch_time"]) == expected
    assert 0 < BATCH_TIME_S < 1e-3  # batches what is queued, never holds a lone request


def test_missing_environment_names_the_setup_script(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as raised:
        mlserver_command(tmp_path / "peer", venv=tmp_path / "no-venv")

    assert str(raised.value) == (
        f"--peer mlserver needs MLServer in {tmp_path / 'no-venv'} (no bin/mlserver there): "
        f"run {SETUP_SCRIPT} first"
    )


def test_command_starts_mlserver_from_its_environment(tmp_path: Path) -> None:
    executable = tmp_path / "venv" / "bin" / "mlserver"
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n", encoding="utf-8")

    command = mlserver_command(tmp_path / "peer", venv=tmp_path / "venv")

    assert command == [str(executable), "start", str(tmp_path / "peer")]
