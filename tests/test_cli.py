"""The ``loopserve`` command: init, and an end-to-end run of the real ``loopserve serve`` process
driven by a standard V2 client (tritonclient)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
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
    assert ModelRegistry(state, TINY_MODEL).current().version == 1
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
    import service.tasks.text._definition as definitions

    def use_tiny_backbone(models_dir: Path, name: str, data: Path):
        definition = original(models_dir, name, data)
        toml = definition.directory / "model.toml"
        toml.write_text(
            toml.read_text().replace('"bundled:all-MiniLM-L6-v2"', f'"{tiny_backbone}"')
        )
        return definitions.load_model_definition(models_dir, name)

    original = definitions.create_definition
    monkeypatch.setattr("service.tasks.text.create_definition", use_tiny_backbone)
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
    def __init__(
        self,
        models_dir: Path,
        state_dir: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        model: str = TINY_MODEL,
    ) -> None:
        self.proc = subprocess.Popen(
            [LOOPSERVE, "serve", "--model", model, "--models-dir", str(models_dir), "--state-dir", str(state_dir),
             "--host", "127.0.0.1", "--grpc-port", "0", "--metrics-port", "0", "--drain-seconds", "5", *extra],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            env={**os.environ, **(env or {})},
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


# ---- init validates the name first; serve's safe defaults and security flags -------------------


@pytest.mark.parametrize("name", ["../x", "tiny\n", "../../etc"])
def test_init_refuses_a_bad_name_before_touching_the_disk(
    tmp_path: Path,
    name: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A built model outside the state dir's models/: "../x" would find it and report it built.
    state = tmp_path / "state"
    (state / "x" / "versions" / "1").mkdir(parents=True)
    (state / "x" / "versions" / "1" / "meta.json").write_text("{}")
    (state / "x" / "current").write_text("1")

    def no_registry(*args: object) -> None:
        raise AssertionError("the registry was created for an invalid name")

    monkeypatch.setattr("service.cli._local.ModelRegistry", no_registry)
    args = ["init", name, "--if-missing", "--models-dir", str(tmp_path), "--state-dir", str(state)]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert f"invalid model name {name!r}" in captured.err
    assert "nothing to build" not in captured.out


@pytest.fixture
def captured_serve(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Settings `loopserve serve` would run with; the server itself is not started."""
    for key in [k for k in os.environ if k.startswith("LOOPSERVE_")]:
        monkeypatch.delenv(key)
    seen: list[Any] = []

    async def record(self: Any) -> int:
        seen.append(self.settings)
        return 0

    monkeypatch.setattr("service.app.App.run_until_signal", record)
    return seen


def test_serve_refuses_a_public_bind_without_tokens(
    captured_serve: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve gRPC on 0.0.0.0 without tokens" in err
    assert "--insecure" in err
    assert captured_serve == []


def test_serve_insecure_allows_a_public_bind(captured_serve: list[Any]) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--insecure"]) == 0
    (settings,) = captured_serve
    assert settings.host == "0.0.0.0" and settings.insecure


def test_serve_default_host_is_loopback(captured_serve: list[Any]) -> None:
    assert main(["serve"]) == 0
    (settings,) = captured_serve
    assert settings.host == "127.0.0.1" and settings.metrics_host == "127.0.0.1"


def test_serve_security_flags_reach_the_settings(
    captured_serve: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("ops:admin:ops-token-0123456789abcdef\n")
    metrics_token = tmp_path / "metrics-token"
    metrics_token.write_text("scrape-token\n")
    monkeypatch.setenv("LOOPSERVE_METRICS_BASIC_AUTH", "prometheus:secret")
    args = [
        "serve", "--host", "0.0.0.0", "--tokens-file", str(tokens), "--tls-cert", "c.pem",
        "--tls-key", "k.pem", "--tls-client-ca", "ca.pem", "--metrics-host", "0.0.0.0",
        "--metrics-token-file", str(metrics_token),
    ]  # fmt: skip
    assert main(args) == 0
    (settings,) = captured_serve
    assert settings.tokens_file == tokens and settings.metrics_token_file == metrics_token
    assert (settings.tls_cert, settings.tls_key, settings.tls_client_ca) == (
        Path("c.pem"), Path("k.pem"), Path("ca.pem"),
    )  # fmt: skip
    assert settings.metrics_host == "0.0.0.0"
    assert settings.metrics_basic_auth == "prometheus:secret"


def test_serve_check_validates_without_serving(
    captured_serve: list[Any],
    tmp_path: Path,
    tls_files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    tls = ["--tls-cert", str(tls_files["server.pem"]), "--tls-key", str(tls_files["server.key"])]
    assert main(["serve", "--check", "--health-port", "8002", *tls]) == 0
    assert "serve settings are valid" in capsys.readouterr().out
    missing = [
        "--tls-cert",
        str(tmp_path / "absent.pem"),
        "--tls-key",
        str(tls_files["server.key"]),
    ]
    assert main(["serve", "--check", *missing]) == 2
    assert "cannot read TLS certificate" in capsys.readouterr().err
    assert main(["serve", "--check", "--host", "0.0.0.0"]) == 2
    assert captured_serve == []


def _scrape(port: int, authorization: str | None) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_serve_with_tokens_tls_and_metrics_auth_end_to_end(
    models_dir: Path,
    state_dir: Path,
    tls_files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = "reader-token-0123456789abcdef"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# test\nreader:infer:{token}\n")
    process = ServerProcess(
        models_dir, state_dir, "--tokens-file", str(tokens),
        "--tls-cert", str(tls_files["server.pem"]), "--tls-key", str(tls_files["server.key"]),
        env={"LOOPSERVE_METRICS_BASIC_AUTH": "prometheus:scrape-secret"},
    )  # fmt: skip
    try:
        address = f"localhost:{process.grpc_port}"
        ca = str(tls_files["server-ca.pem"])
        base = ["predict", "hello there team", "--addr", address, "--model", TINY_MODEL]
        assert main([*base, "--tls-ca", ca, "--token", token, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)[0]["label"] in TINY_LABELS
        assert main([*base, "--tls-ca", ca]) == 1
        assert "UNAUTHENTICATED" in capsys.readouterr().err
        assert main([*base, "--token", token]) == 1  # plaintext against TLS
        assert "UNAVAILABLE" in capsys.readouterr().err
        assert _scrape(process.metrics_port, None) == 401
        good = "Basic " + base64.b64encode(b"prometheus:scrape-secret").decode()
        assert _scrape(process.metrics_port, good) == 200
    finally:
        assert process.stop() == 0
    log = "".join(process.log)
    assert "TLS, tokens required, metrics need credentials" in log
    assert token not in log and "scrape-secret" not in log
