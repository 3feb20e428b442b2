"""How bench/serving.py sets up MLServer as its peer server: the environment it runs from, and its
settings files, written from typed records that the peer runtime (mlserver_onnx.py) reads back.

Standard library only: this module is imported by the benchmark (the project's environment) and
by the peer runtime (bench/.venv-mlserver, which has no ``service`` package).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent
VENV = BENCH / ".venv-mlserver"
SETUP_SCRIPT = "bench/peers/mlserver-venv.sh"
IMPLEMENTATION = "bench.peers.mlserver_onnx.OnnxTextClassifier"
# MLServer turns adaptive batching off at max_batch_time 0. The shortest positive wait batches
# what is queued when the batcher runs and never waits for more, as loopserve does at
# max_queue_delay_ms = 0: a lone request is not held back.
BATCH_TIME_S = 1e-6
VERSIONS_TIMEOUT_S = 60.0
# Texts per model run, a histogram the runtime observes on MLServer's /metrics (loopserve's is
# loopserve_batch_size): it shows what adaptive batching grouped.
BATCH_METRIC = "peer_batch_texts"


@dataclass(frozen=True)
class RuntimeParameters:
    """What the peer runtime serves: loopserve's version dir, the graph file it serves from it,
    and the ONNX Runtime settings loopserve runs it with."""

    version_dir: str
    serving_file: str  # model.onnx (fp32) or model.int8.onnx
    intra_op_threads: int
    thread_spinning: bool
    spin_duration_us: int = 0  # 0: ONNX Runtime's default

    @staticmethod
    def from_extra(extra: Mapping[str, Any]) -> RuntimeParameters:
        """Read back from model-settings.json's ``parameters.extra``."""
        return RuntimeParameters(
            version_dir=str(extra["version_dir"]),
            serving_file=str(extra["serving_file"]),
            intra_op_threads=int(extra["intra_op_threads"]),
            thread_spinning=bool(extra["thread_spinning"]),
            spin_duration_us=int(extra.get("spin_duration_us", 0)),
        )


@dataclass(frozen=True)
class PeerConfig:
    """One MLServer start: its ports, the model it serves and how it batches."""

    model: str
    grpc_port: int
    http_port: int
    metrics_port: int
    runtime: RuntimeParameters
    max_batch_size: int  # 0: adaptive batching off

    def settings(self) -> dict[str, Any]:
        """settings.json: in-process inference (parallel_workers 0), no per-request access log
        (debug off), metrics on (loopserve keeps its own per-request metrics too)."""
        return {
            "host": "127.0.0.1",
            "grpc_port": self.grpc_port,
            "http_port": self.http_port,
            "metrics_port": self.metrics_port,
            "metrics_endpoint": "/metrics",
            "parallel_workers": 0,
            "debug": False,
            "load_models_at_startup": True,
        }

    def model_settings(self) -> dict[str, Any]:
        """model-settings.json: the peer runtime on ``runtime``, with adaptive batching when
        ``max_batch_size`` > 1."""
        batching = (
            {"max_batch_size": self.max_batch_size, "max_batch_time": BATCH_TIME_S}
            if self.max_batch_size > 1
            else {"max_batch_size": 0, "max_batch_time": 0.0}
        )
        return {
            "name": self.model,
            "implementation": IMPLEMENTATION,
            **batching,
            "parameters": {"extra": asdict(self.runtime)},
        }


def write_settings(folder: Path, config: PeerConfig) -> Path:
    """Write settings.json into ``folder`` and model-settings.json into ``folder/<model>/``
    (MLServer's model repository is ``folder``); returns ``folder``."""
    model_dir = folder / config.model
    model_dir.mkdir(parents=True, exist_ok=True)
    # Everything MLServer keeps on disk stays in ``folder``, not in the directory it runs from.
    settings = {
        **config.settings(),
        "model_repository_root": str(folder),
        "environments_dir": str(folder / ".envs"),
        "metrics_dir": str(folder / ".metrics"),
    }
    _write_json(folder / "settings.json", settings)
    _write_json(model_dir / "model-settings.json", config.model_settings())
    return folder


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def mlserver_executable(venv: Path = VENV) -> Path:
    """The peer environment's ``mlserver``, or a SystemExit that says how to make it."""
    executable = venv / "bin" / "mlserver"
    if not executable.is_file():
        raise SystemExit(
            f"--peer mlserver needs MLServer in {venv} (no bin/mlserver there): "
            f"run {SETUP_SCRIPT} first"
        )
    return executable


def mlserver_command(folder: Path, venv: Path = VENV) -> list[str]:
    """``mlserver start folder`` from the peer's environment."""
    return [str(mlserver_executable(venv)), "start", str(folder)]


def peer_versions(venv: Path = VENV) -> dict[str, str]:
    """The versions the peer runs (MLServer, ONNX Runtime, tokenizers), for the report."""
    names = ("mlserver", "onnxruntime", "tokenizers")
    code = (
        "import importlib.metadata as m, json; "
        f"print(json.dumps({{n: m.version(n) for n in {names!r}}}))"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        check=True,
        capture_output=True,
        text=True,
        timeout=VERSIONS_TIMEOUT_S,
    )
    versions: dict[str, str] = json.loads(out.stdout)
    return versions
