"""A domain shift streamed through the real ``loopserve serve`` by a standard V2 client raises
``loopserve_drift_alarm``; ``loopserve drift`` and ``loopserve candidates`` report it."""

from __future__ import annotations

import functools
import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TINY_MODEL, write_tiny_definition
from test_cli import LOOPSERVE, ServerProcess, run_client
from test_monitor import DRIFT, in_distribution, shifted
from waiting import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def drift_process(tmp_path: Path, tiny_backbone: Path, state_dir: Path) -> Iterator[ServerProcess]:
    models = tmp_path / "models"
    write_tiny_definition(models, tiny_backbone, drift=DRIFT)
    process = ServerProcess(models, state_dir)
    yield process
    if process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait(10)


def cli(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [LOOPSERVE, *args, "--model", TINY_MODEL, "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(done.stdout)
    return result


def drift_status(address: str) -> dict[str, dict[str, object]]:
    status = cli("drift", "--addr", address)
    return {d["detector"]: d for d in status["detectors"]}


def alarm_metrics(port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    # The model-level alarm: one series per model.
    return [line for line in text.splitlines() if line.startswith("loopserve_drift_alarm{")]


def stream(address: str, texts: list[str], path: Path) -> None:
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert run_client("texts", address, TINY_MODEL, str(path))["sent"] == len(texts)


def test_a_domain_shift_through_loopserve_serve_raises_the_alarm(
    drift_process: ServerProcess, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{drift_process.grpc_port}"
    detectors = functools.partial(drift_status, address)
    alarms = functools.partial(alarm_metrics, drift_process.metrics_port)
    wait_for(detectors, lambda status: status["embedding"]["state"] == "ready", 120, "embedding")
    stream(address, in_distribution(60, seed=1), tmp_path / "reference.txt")
    wait_for(detectors, lambda status: all(d["state"] == "ready" for d in status.values()), 120)
    assert all(line.endswith(" 0.0") for line in alarm_metrics(drift_process.metrics_port))
    stream(address, shifted(60, seed=3), tmp_path / "shift.txt")
    wait_for(alarms, lambda lines: any(line.endswith(" 1.0") for line in lines), 120, "an alarm")
    assert any(d["alarm"] for d in drift_status(address).values())
    out = tmp_path / "candidates.csv"
    subprocess.run(
        [LOOPSERVE, "candidates", "--addr", address, "--model", TINY_MODEL, "--out", str(out)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("text,label,prediction_id") and len(lines) == 21
    assert drift_process.stop() == 0
