"""The ``loopserve`` command: init, and an end-to-end run of the real ``loopserve serve`` process
driven by a standard V2 client (tritonclient)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TINY_LABELS, TINY_MODEL, tiny_rows, write_csv, write_tiny_definition

from service.cli import main
from service.registry import ModelRegistry

LOOPSERVE = str(Path(sys.executable).parent / "loopserve")
READY_LINE = re.compile(r"serving .* on [\d.]+:(\d+) \(gRPC\), metrics on :(\d+)/metrics")


def test_init_builds_once_and_if_missing_skips(
    tmp_path: Path, tiny_backbone: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models, state = tmp_path / "models", tmp_path / "state"
    write_tiny_definition(models, tiny_backbone)
    args = ["init", TINY_MODEL, "--models-dir", str(models), "--state-dir", str(state)]
    assert main(args) == 0
    assert ModelRegistry(state, TINY_MODEL).current().version == 1  # type: ignore[union-attr]
    assert main([*args, "--if-missing"]) == 0
    assert "version 1 exists; nothing to build" in capsys.readouterr().out
    assert [v.version for v in ModelRegistry(state, TINY_MODEL).versions()] == [1]


def test_init_with_data_creates_the_definition(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tiny_backbone: Path,
) -> None:
    data = write_csv(tmp_path / "intents.csv", tiny_rows())
    import service.training._build as build

    def use_tiny_backbone(models_dir: Path, name: str, data: Path):  # type: ignore[no-untyped-def]
        definition = original(models_dir, name, data)
        toml = definition.directory / "model.toml"
        toml.write_text(
            toml.read_text().replace('"bundled:all-MiniLM-L6-v2"', f'"{tiny_backbone}"')
        )
        return build.load_model_definition(models_dir, name)

    original = build.create_definition
    monkeypatch.setattr("service.training.create_definition", use_tiny_backbone)
    code = main(
        [
            "init",
            "mine",
            "--data",
            str(data),
            "--models-dir",
            str(tmp_path / "m"),
            "--state-dir",
            str(tmp_path / "s"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "labels complaint, greeting, question" in out
    assert "published mine version 1" in out


def test_bad_input_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["init", "Bad Name!", "--models-dir", str(tmp_path), "--state-dir", str(tmp_path)])
        == 2
    )
    assert "invalid model name 'Bad Name!'" in capsys.readouterr().err
    assert (
        main(["init", "absent", "--models-dir", str(tmp_path), "--state-dir", str(tmp_path)]) == 2
    )
    assert "no model definition" in capsys.readouterr().err


class ServerProcess:
    def __init__(self, models_dir: Path, state_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [LOOPSERVE, "serve", "--model", TINY_MODEL, "--models-dir", str(models_dir), "--state-dir", str(state_dir),
             "--host", "127.0.0.1", "--grpc-port", "0", "--metrics-port", "0", "--drain-seconds", "5"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.log: list[str] = []
        self.grpc_port, self.metrics_port = self._wait_ready(timeout=60)
        self._reader = threading.Thread(target=self._drain_log, daemon=True)
        self._reader.start()

    def _wait_ready(self, timeout: float) -> tuple[int, int]:
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise AssertionError("server exited before ready:\n" + "".join(self.log))
            self.log.append(line)
            match = READY_LINE.search(line)
            if match:
                return int(match.group(1)), int(match.group(2))
        raise AssertionError("server not ready in time:\n" + "".join(self.log))

    def _drain_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self._reader.join(5)
        return code


@pytest.fixture
def server_process(models_dir: Path, state_dir: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(models_dir, state_dir)
    yield process
    if process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait(10)


def run_client(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "triton_client.py"), *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.slow
def test_serve_end_to_end_with_tritonclient(server_process: ServerProcess) -> None:
    url = f"127.0.0.1:{server_process.grpc_port}"
    report = run_client("infer", url, TINY_MODEL)
    assert report["live"] and report["ready"] and report["model_ready"]
    metadata = report["metadata"]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert [i["name"] for i in metadata["inputs"]] == ["text"]
    assert [o["name"] for o in metadata["outputs"]] == ["label", "probabilities", "embedding"]
    assert all(label in TINY_LABELS for label in report["labels"])
    probabilities = np.array(report["probabilities"])
    assert probabilities.shape == (2, len(TINY_LABELS))
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
    assert report["id"] == "e2e-1"
    assert json.loads(report["label_order"]) == TINY_LABELS
    assert report["missing_model"][0] == "StatusCode.NOT_FOUND"
    assert "unknown model 'missing-model'" in report["missing_model"][1]

    predicted = subprocess.run(
        [LOOPSERVE, "predict", "hello there team", "--addr", url, "--model", TINY_MODEL, "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(predicted.stdout)[0]["label"] in TINY_LABELS


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests_and_exits_0(server_process: ServerProcess) -> None:
    url = f"127.0.0.1:{server_process.grpc_port}"
    report = run_client("drain", url, TINY_MODEL, str(server_process.proc.pid))
    code = server_process.stop()
    assert code == 0, f"exit code {code}:\n" + "".join(server_process.log)
    assert report["finished"]
    log = "".join(server_process.log)
    assert "signal received: draining" in log and "stopped" in log
    # Admitted requests finish and later ones are refused UNAVAILABLE (tests/test_app.py checks
    # that deterministically). grpcio itself cancels calls it had not yet handed to a handler
    # when the transport stops, which a starved machine can hit; nothing may fail otherwise.
    outcomes = report["outcomes"]
    assert outcomes.count("ok") > 0
    assert set(outcomes) <= {"ok", "StatusCode.UNAVAILABLE", "StatusCode.CANCELLED"}
