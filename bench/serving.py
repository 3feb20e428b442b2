"""Serving overhead benchmark: the loopserve gRPC server against in-process ONNX Runtime.

For the default model (support-intents on all-MiniLM-L6-v2), in fp32 and in int8, it measures:

1. in-process: ``LoadedVersion.predict`` (same tokenizer path, model file and thread count as the
   server): latency of one text at a time and the best throughput over a few batch sizes. Its
   ONNX Runtime workers spin as long as ONNX Runtime's default lets them (the fastest for runs
   back to back), whatever the server's ``[serving] thread_spin_us``;
2. the server, started as a real ``loopserve serve`` subprocess, driven over gRPC by a separate
   client process (spawned) at concurrency 1 and 16, one text per ModelInfer request, with the
   model's drift monitoring (``--no-drift``: without, like the peer);
3. the ratios server p50 (c=1) / in-process p50 (target <= 1.3) and server throughput (c=16) /
   best in-process throughput (target >= 0.9);
4. the server's resident memory after load and its time from process start to ServerReady;
5. with ``--repeat N``, repeated traffic apart: requests that cycle through N distinct texts, on a
   server with the response cache off and on one with ``[serving] cache = true``, at the same
   concurrencies, with the share of requests the cache answered;
6. with ``--peer mlserver``, MLServer (bench/.venv-mlserver, made by bench/peers/mlserver-venv.sh)
   on the same version dir, graph, tokenizer and ONNX Runtime settings, driven by the same client
   phases, and the ratios loopserve / MLServer.
7. the transport floor (``--no-floor`` to skip): bench/peers/floor_server.py, a bare grpc.aio
   server that parses each request and answers loopserve's own response bytes, driven by the same
   client. Its latency and CPU are what gRPC and this client cost here whatever the server does;
   with the in-process figures they estimate the ratios of a server that added nothing else:
   (in-process p50 + floor p50) / in-process p50, and the throughput of the machine's cores if
   each text cost only its in-process CPU plus the floor's CPU per request.

Everything runs on 127.0.0.1 with free ports found first, every loop is bounded in count and in
time, and the server is always stopped. The project's own ``.loopserve/`` is only ever read: the
served state dirs are built in a temporary directory. Usage::

    .venv/bin/python bench/serving.py [--state-dir DIR] [--requests N] [--duration S]
                                      [--threads T] [--repeat N] [--peer mlserver]
                                      [--no-drift] [--no-floor] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import dataclasses
import json
import logging
import multiprocessing
import os
import platform
import queue
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MODEL = "support-intents"
BANKING77 = REPO.parent / "shared" / "data" / "banking77"
MAX_TEXTS = 2000
BATCH_SIZES = (1, 4, 8, 16, 32)
CONCURRENCIES = (1, 16)
CHECK_TEXTS = 16
WARMUP_REQUESTS = 32
READY_TIMEOUT_S = 120.0
BUILD_TIMEOUT_S = 900.0
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
TARGET_P50_RATIO = 1.3
TARGET_THROUGHPUT_RATIO = 0.9
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------- results


@dataclass
class Phase:
    """One measured run: a latency distribution, a throughput and the CPU it cost."""

    name: str
    requests: int
    texts: int
    seconds: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    texts_per_s: float
    cpu_ms_per_text: float  # in-process: this process; server: the server process only
    client_cpu_ms_per_text: float | None = None
    errors: int = 0
    first_error: str = ""
    internals: dict[str, float] = field(default_factory=dict)  # server: deltas of its /metrics
    other_cores: float = float("nan")  # CPUs used meanwhile by processes outside the benchmark


def at_concurrency(phases: list[Phase], concurrency: int) -> Phase:
    """The gRPC run at ``concurrency`` among a server's runs (named ``<server> c=<n>``)."""
    return next(p for p in phases if p.name.endswith(f" c={concurrency}"))


@dataclass(frozen=True)
class PeerRatios:
    """loopserve ÷ peer on the same traffic: latency ratios below 1 and a throughput ratio above
    1 mean loopserve does better."""

    p50_c1: float
    p99_c1: float
    throughput_c16: float


def peer_ratios(server: list[Phase], peer: list[Phase]) -> PeerRatios:
    ours, theirs = at_concurrency(server, 1), at_concurrency(peer, 1)
    return PeerRatios(
        p50_c1=ours.p50_ms / theirs.p50_ms,
        p99_c1=ours.p99_ms / theirs.p99_ms,
        throughput_c16=at_concurrency(server, 16).texts_per_s
        / at_concurrency(peer, 16).texts_per_s,
    )


@dataclass
class PeerResult:
    """A peer server (--peer) on the same version dir, driven by the same client phases."""

    name: str
    config: dict[str, Any]  # how it was set up: batching, workers, versions
    phases: list[Phase] = field(default_factory=list)
    ready_s: float = float("nan")
    starts: int = 1
    rss_after_load_mib: float = float("nan")
    hwm_mib: float = float("nan")
    label_agreement: float = float("nan")  # top labels equal to loopserve's on CHECK_TEXTS
    max_prob_diff: float = float("nan")  # against loopserve's probabilities on CHECK_TEXTS


@dataclass
class VariantResult:
    variant: str
    serving_file: str
    onnx_mib: float
    prepared: str
    in_process: list[Phase] = field(default_factory=list)
    server: list[Phase] = field(default_factory=list)
    # --repeat: repeated traffic on a server with the response cache off, then on.
    repeat: list[Phase] = field(default_factory=list)
    ready_s: float = float("nan")
    server_starts: int = 1
    rss_after_load_mib: float = float("nan")
    hwm_after_load_mib: float = float("nan")
    rss_after_bench_mib: float = float("nan")
    hwm_mib: float = float("nan")
    max_prob_diff: float = float("nan")
    label_agreement: float = float("nan")
    peer: PeerResult | None = None
    # The transport floor (bench/peers/floor_server.py) driven by the same client.
    floor: list[Phase] = field(default_factory=list)

    def in_process_latency(self) -> Phase:
        return self.in_process[0]

    def in_process_best(self) -> Phase:
        return max(self.in_process[1:], key=lambda p: p.texts_per_s)

    def server_phase(self, concurrency: int) -> Phase:
        return at_concurrency(self.server, concurrency)

    def peer_ratios(self) -> PeerRatios | None:
        return None if self.peer is None else peer_ratios(self.server, self.peer.phases)

    def p50_ratio(self) -> float:
        return self.server_phase(1).p50_ms / self.in_process_latency().p50_ms

    def throughput_ratio(self) -> float:
        return self.server_phase(16).texts_per_s / self.in_process_best().texts_per_s

    def floor_bounds(self, cores: int) -> FloorBounds | None:
        return None if not self.floor else floor_bounds(self, cores)


@dataclass(frozen=True)
class FloorBounds:
    """Estimated ratios of a server whose only cost beyond in-process inference is the
    transport floor, from one run.

    ``p50_ratio``: (in-process p50 + floor p50 at c=1) / in-process p50. ``throughput_ratio``:
    the machine's cores spent on nothing but each text's in-process CPU (at the best batch size)
    plus the floor's server and client CPU per request, over the in-process best. Estimates, not
    bounds: they divide figures from different minutes, and the in-process CPU includes what its
    ONNX Runtime workers spent spinning, so the throughput estimate can come out low.
    """

    p50_ratio: float
    throughput_ratio: float
    floor_cpu_ms: float  # server + client CPU per request at c=16


def floor_bounds(result: VariantResult, cores: int) -> FloorBounds:
    latency, best = result.in_process_latency(), result.in_process_best()
    c1, c16 = at_concurrency(result.floor, 1), at_concurrency(result.floor, 16)
    transport_ms = c16.cpu_ms_per_text + (c16.client_cpu_ms_per_text or 0.0)
    ceiling = cores * 1000.0 / (best.cpu_ms_per_text + transport_ms)
    return FloorBounds(
        p50_ratio=(latency.p50_ms + c1.p50_ms) / latency.p50_ms,
        throughput_ratio=ceiling / best.texts_per_s,
        floor_cpu_ms=transport_ms,
    )


def machine_busy_seconds() -> float:
    """CPU-seconds the whole machine has been busy (user, system, irq, steal) since boot."""
    with open("/proc/stat", encoding="ascii") as handle:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (
            int(v) for v in handle.readline().split()[1:9]
        )
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def summarize(
    name: str,
    latencies_s: list[float],
    texts: int,
    seconds: float,
    cpu_s: float,
    client_cpu_s: float | None = None,
    errors: int = 0,
    first_error: str = "",
    machine_busy_s: float | None = None,
) -> Phase:
    ms = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    p50, p99 = (float(np.percentile(ms, q)) for q in (50, 99)) if ms.size else (np.nan, np.nan)
    per_text = 1000.0 / max(texts, 1)
    return Phase(
        name=name,
        requests=int(ms.size),
        texts=texts,
        seconds=seconds,
        p50_ms=p50,
        p99_ms=p99,
        mean_ms=float(ms.mean()) if ms.size else float("nan"),
        texts_per_s=texts / seconds if seconds > 0 else float("nan"),
        cpu_ms_per_text=cpu_s * per_text,
        client_cpu_ms_per_text=None if client_cpu_s is None else client_cpu_s * per_text,
        errors=errors,
        first_error=first_error,
        other_cores=float("nan")
        if machine_busy_s is None or seconds <= 0
        else max(0.0, machine_busy_s - cpu_s - (client_cpu_s or 0.0)) / seconds,
    )


# ----------------------------------------------------------------------------------- preparation


def server_default_threads() -> int:
    """What the server uses for ``intra_op_threads = 0``: the CPUs this process may use."""
    try:
        from service.runtime import available_cpus
    except ImportError:  # older service code sized the pool by os.cpu_count()
        return os.cpu_count() or 1
    return int(available_cpus())


def load_texts() -> tuple[list[str], str]:
    """Short customer-support sentences: banking77 when it is there, else the model's seed data."""
    candidates = [
        BANKING77 / "test.csv",
        BANKING77 / "train.csv",
        REPO / "models" / MODEL / "seed.csv",
    ]
    for path in candidates:
        if not path.is_file():
            continue
        with path.open(newline="", encoding="utf-8") as handle:
            texts = [row["text"].strip() for row in csv.DictReader(handle) if row.get("text")]
        texts = [t for t in texts if t]
        if texts:
            random.Random(0).shuffle(texts)
            return texts[:MAX_TEXTS], str(path)
    raise SystemExit("no input texts found (banking77 or models/support-intents/seed.csv)")


def loopserve_command() -> list[str]:
    script = Path(sys.executable).parent / "loopserve"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "service.cli"]


def ensure_built(state_dir: Path, models_dir: Path) -> float | None:
    """Build the model's first version into ``state_dir`` unless it has one; seconds or None."""
    from service.registry import ModelRegistry

    if ModelRegistry(state_dir, MODEL).current() is not None:
        return None
    print(f"building {MODEL} into {state_dir} (loopserve init) ...", flush=True)
    started = time.perf_counter()
    cmd = [*loopserve_command(), "init", MODEL, "--state-dir", str(state_dir)]
    subprocess.run(
        [*cmd, "--models-dir", str(models_dir)], cwd=REPO, check=True, timeout=BUILD_TIMEOUT_S
    )
    return time.perf_counter() - started


def models_dir_with_threads(models_dir: Path, threads: int, work: Path, spinning: bool) -> Path:
    """A copy of the model definition with [serving] intra_op_threads and thread_spinning set."""
    from service.config import load_model_definition

    target = work / "models"
    shutil.copytree(models_dir / MODEL, target / MODEL)
    toml = target / MODEL / "model.toml"
    text = toml.read_text(encoding="utf-8")
    line = f"intra_op_threads = {threads}"
    text, n = re.subn(r"(?m)^intra_op_threads\s*=.*$", line, text)
    if n == 0:
        text, n = re.subn(r"(?m)^\[serving\]\s*$", f"[serving]\n{line}", text, count=1)
    if n == 0:
        text += f"\n[serving]\n{line}\n"
    spin = f"thread_spinning = {'true' if spinning else 'false'}"
    text, n = re.subn(r"(?m)^thread_spinning\s*=.*$", spin, text)
    if n == 0:
        text = re.sub(r"(?m)^\[serving\]\s*$", f"[serving]\n{spin}", text, count=1)
    toml.write_text(text, encoding="utf-8")
    if load_model_definition(target, MODEL).serving.thread_spinning != spinning:
        raise SystemExit(f"could not set thread_spinning in {toml}")
    if load_model_definition(target, MODEL).serving.intra_op_threads != threads:
        raise SystemExit(f"could not set intra_op_threads = {threads} in {toml}")
    return target


def models_dir_with_cache(models_dir: Path, work: Path) -> Path:
    """A copy of ``models_dir`` (see models_dir_with_threads) with [serving] cache = true."""
    from service.config import load_model_definition

    target = work / "models-cache"
    if target.exists():
        return target
    shutil.copytree(models_dir, target)
    toml = target / MODEL / "model.toml"
    text = toml.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^\[serving\]\s*$", "[serving]\ncache = true", text, count=1)
    toml.write_text(text, encoding="utf-8")
    if not load_model_definition(target, MODEL).serving.cache:
        raise SystemExit(f"could not set [serving] cache = true in {toml}")
    return target


def models_dir_without_drift(models_dir: Path, work: Path) -> Path:
    """A copy of ``models_dir`` whose model has ``[drift] detectors = []``."""
    from service.config import load_model_definition

    target = work / "models-drift-off"
    shutil.copytree(models_dir, target)
    toml = target / MODEL / "model.toml"
    text = toml.read_text(encoding="utf-8")
    if re.search(r"(?m)^\[drift\]\s*$", text):
        text = re.sub(r"(?m)^\[drift\]\s*$", "[drift]\ndetectors = []", text, count=1)
    else:
        text += "\n[drift]\ndetectors = []\n"
    toml.write_text(text, encoding="utf-8")
    if load_model_definition(target, MODEL).drift.enabled:
        raise SystemExit(f"could not turn drift monitoring off in {toml}")
    return target


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def prepare_variant(source_state: Path, variant: str, work: Path) -> tuple[Path, str]:
    """A state dir of its own serving the current version as fp32 or int8, and how it was made."""
    from service.registry import ModelRegistry

    info = ModelRegistry(source_state, MODEL).current()
    assert info is not None
    state = work / variant / "state"
    version_dir = state / "models" / MODEL / "versions" / str(info.version)
    version_dir.mkdir(parents=True)
    link_or_copy(info.path / "tokenizer.json", version_dir / "tokenizer.json")
    how = "built version"
    if variant == "fp32":
        serving_file = "model.onnx"
        link_or_copy(info.path / serving_file, version_dir / serving_file)
    else:
        serving_file = "model.int8.onnx"
        if (info.path / serving_file).is_file():
            link_or_copy(info.path / serving_file, version_dir / serving_file)
        else:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            started = time.perf_counter()
            logging.disable(logging.WARNING)  # its "consider pre-processing" hint
            try:
                quantize_dynamic(
                    str(info.path / "model.onnx"),
                    str(version_dir / serving_file),
                    weight_type=QuantType.QInt8,
                )
            finally:
                logging.disable(logging.NOTSET)
            how = f"quantize_dynamic QInt8 by bench ({time.perf_counter() - started:.1f}s)"
    meta = dataclasses.replace(info.meta, serving_file=serving_file).to_dict()
    (version_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    (state / "models" / MODEL / "current").write_text(f"{info.version}\n", encoding="utf-8")
    return state, how


# ------------------------------------------------------------------------------------ in-process


def load_version(state: Path, threads: int, providers: str, spinning: bool) -> Any:
    """The server's own loading path: registry -> LoadedVersion with the served file, warmed."""
    from service import tasks
    from service.registry import ModelRegistry
    from service.runtime import SessionOptions

    info = ModelRegistry(state, MODEL).current()
    assert info is not None
    loaded = tasks.open_version(MODEL, info, SessionOptions(threads, providers, spinning))
    loaded.warm_up()
    return loaded


def bench_in_process(loaded: Any, texts: list[str], requests: int, duration: float) -> list[Phase]:
    n = len(texts)
    for i in range(WARMUP_REQUESTS):
        loaded.predict([texts[i % n]])
    latencies: list[float] = []
    busy0, cpu0, start = machine_busy_seconds(), time.process_time(), time.perf_counter()
    deadline = start + duration
    for i in range(requests):
        t0 = time.perf_counter()
        loaded.predict([texts[i % n]])
        t1 = time.perf_counter()
        latencies.append(t1 - t0)
        if t1 > deadline:
            break
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    busy = machine_busy_seconds() - busy0
    phases = [
        summarize("in-process 1 text", latencies, len(latencies), wall, cpu, machine_busy_s=busy)
    ]
    per_batch = duration / len(BATCH_SIZES)
    for size in BATCH_SIZES:
        batches = [[texts[(b * size + k) % n] for k in range(size)] for b in range(n)]
        for b in range(2):
            loaded.predict(batches[b])
        target = max(requests, 3 * size)
        latencies, done, b = [], 0, 0
        busy0, cpu0, start = machine_busy_seconds(), time.process_time(), time.perf_counter()
        deadline = start + per_batch
        while done < target and b < len(batches):
            t0 = time.perf_counter()
            loaded.predict(batches[b])
            t1 = time.perf_counter()
            latencies.append(t1 - t0)
            done += size
            b += 1
            if t1 > deadline:
                break
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        busy = machine_busy_seconds() - busy0
        name = f"in-process batch={size}"
        phases.append(summarize(name, latencies, done, wall, cpu, machine_busy_s=busy))
    return phases


def reference_probabilities(loaded: Any, texts: list[str]) -> list[list[float]]:
    return [loaded.predict([t]).probabilities[0].tolist() for t in texts[:CHECK_TEXTS]]


# ---------------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_status_mib(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of all threads of ``pid``."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class ServerProcess:
    """``loopserve serve`` on 127.0.0.1; use as a context manager so it is always stopped."""

    def __init__(
        self,
        state: Path,
        models_dir: Path,
        log_path: Path,
        model: str = MODEL,
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        cmd = [
            *loopserve_command(), "serve", "--model", model,
            "--state-dir", str(state), "--models-dir", str(models_dir),
            "--host", "127.0.0.1", "--grpc-port", str(self.grpc_port),
            "--metrics-port", str(self.metrics_port), "--log-level", "INFO", *extra,
        ]  # fmt: skip
        # The console's fixed default port could be taken (another server, another bench).
        self._spawn(cmd, log_path, {"LOOPSERVE_CONSOLE_PORT": "0", **os.environ, **(env or {})})

    def _spawn(self, cmd: list[str], log_path: Path, env: dict[str, str]) -> None:
        """Start ``cmd`` from the repository, its output to ``log_path``, gRPC on grpc_port."""
        self.address = f"127.0.0.1:{self.grpc_port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S, token: str | None = None) -> float:
        """Seconds from process start until ServerReady answers true (asked with ``token``
        where the server requires one)."""
        import grpc

        from service.api._proto.inference import grpc_predict_v2_pb2 as pb

        deadline = self.started + timeout
        with grpc.insecure_channel(self.address) as channel:
            server_ready = channel.unary_unary(
                "/inference.GRPCInferenceService/ServerReady",
                request_serializer=pb.ServerReadyRequest.SerializeToString,
                response_deserializer=pb.ServerReadyResponse.FromString,
            )
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    gone = (
                        "gone" if not Path(f"/proc/{self.proc.pid}").exists() else "still in /proc"
                    )
                    raise RuntimeError(
                        f"server pid {self.proc.pid} exited with {self.proc.returncode} "
                        f"({gone}) after {time.perf_counter() - self.started:.2f}s:\n{self.tail()}"
                    )
                with contextlib.suppress(grpc.RpcError):
                    metadata = (("authorization", f"Bearer {token}"),) if token else None
                    ready = server_ready(pb.ServerReadyRequest(), timeout=1.0, metadata=metadata)
                    if ready.ready:
                        return time.perf_counter() - self.started
                time.sleep(0.02)
        raise TimeoutError(f"server not ready after {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=15)
        finally:
            self._log.close()


class MLServerProcess(ServerProcess):
    """MLServer from bench/.venv-mlserver serving ``runtime`` with bench/peers/mlserver_onnx.py,
    its settings written into ``folder``; answers ServerReady and ModelInfer as loopserve does."""

    def __init__(self, folder: Path, runtime: Any, max_batch_size: int, log_path: Path) -> None:
        from bench.peers.mlserver_config import PeerConfig, mlserver_command, write_settings

        self.grpc_port = free_port()
        self.metrics_port = free_port()
        config = PeerConfig(
            MODEL, self.grpc_port, free_port(), self.metrics_port, runtime, max_batch_size
        )
        cmd = mlserver_command(write_settings(folder, config))
        # The runtime is imported as bench.peers.mlserver_onnx, from the repository.
        self._spawn(cmd, log_path, {**os.environ, "PYTHONPATH": str(REPO)})


class FloorServerProcess(ServerProcess):
    """bench/peers/floor_server.py answering ``response_file``'s bytes to every ModelInfer."""

    def __init__(self, response_file: Path, log_path: Path) -> None:
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        cmd = [
            sys.executable, "-m", "bench.peers.floor_server", "--port", str(self.grpc_port),
            "--metrics-port", str(self.metrics_port), "--response", str(response_file),
        ]  # fmt: skip
        self._spawn(cmd, log_path, dict(os.environ))


def raw_response(address: str, text: str) -> bytes:
    """The serialized ModelInferResponse a server gives for ``text``."""
    import grpc

    with grpc.insecure_channel(address) as channel:
        return bytes(channel.unary_unary(INFER_METHOD)(_encode_request(text), timeout=30))


# ---------------------------------------------------------------------------------------- client


SCRAPED = {
    "batch": "loopserve_batch_size",
    "request": "loopserve_request_duration_seconds",
    "queue": "loopserve_queue_duration_seconds",
    "inference": "loopserve_inference_duration_seconds",
}
SAMPLE = re.compile(r"^(\w+?)_(sum|count)(?:\{[^}]*\})? ([0-9.eE+-]+|NaN)$", re.MULTILINE)
CACHE_SAMPLE = re.compile(
    r'^loopserve_response_cache_requests_total\{[^}]*outcome="(hit|miss)"[^}]*\} ([0-9.eE+-]+)$',
    re.MULTILINE,
)


def scrape_metrics(port: int) -> dict[str, float]:
    """``<metric>_sum`` and ``<metric>_count`` of the histograms in SCRAPED, summed over labels."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode("utf-8")
    from bench.peers.mlserver_config import BATCH_METRIC

    # A peer server's histogram of texts per batch reads as loopserve's.
    aliases = {BATCH_METRIC: SCRAPED["batch"]}
    wanted = set(SCRAPED.values())
    values: dict[str, float] = {}
    for found, kind, value in SAMPLE.findall(text):
        name = aliases.get(found, found)
        if name in wanted:
            key = f"{name}_{kind}"
            values[key] = values.get(key, 0.0) + float(value)
    for outcome, value in CACHE_SAMPLE.findall(text):
        values[f"cache_{outcome}"] = values.get(f"cache_{outcome}", 0.0) + float(value)
    return values


def internals(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Means over one phase: texts per batch, and ms per request in the server, queue, batch."""

    def mean(metric: str, scale: float) -> float:
        count = after.get(f"{metric}_count", 0.0) - before.get(f"{metric}_count", 0.0)
        total = after.get(f"{metric}_sum", 0.0) - before.get(f"{metric}_sum", 0.0)
        return total / count * scale if count else float("nan")

    hits = after.get("cache_hit", 0.0) - before.get("cache_hit", 0.0)
    misses = after.get("cache_miss", 0.0) - before.get("cache_miss", 0.0)
    return {
        "mean_batch": mean(SCRAPED["batch"], 1.0),
        "server_request_ms": mean(SCRAPED["request"], 1000.0),
        "queue_ms": mean(SCRAPED["queue"], 1000.0),
        "batch_ms": mean(SCRAPED["inference"], 1000.0),
        "cache_hit_ratio": hits / (hits + misses) if hits + misses else float("nan"),
    }


def _encode_request(text: str) -> bytes:
    from service.api._proto.inference import grpc_predict_v2_pb2 as pb

    data = text.encode("utf-8")
    request = pb.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="text", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(struct.pack("<I", len(data)) + data)
    return bytes(request.SerializeToString())


def _decode_probabilities(raw: bytes) -> tuple[str, list[float]]:
    from service.api._proto.inference import grpc_predict_v2_pb2 as pb

    response = pb.ModelInferResponse.FromString(raw)
    outputs = {t.name: i for i, t in enumerate(response.outputs)}
    label_raw = response.raw_output_contents[outputs["label"]]
    label = label_raw[4 : 4 + struct.unpack_from("<I", label_raw)[0]].decode()
    probs = np.frombuffer(response.raw_output_contents[outputs["probabilities"]], dtype="<f4")
    return label, probs.tolist()


async def _drive(
    call: Any, encoded: list[bytes], concurrency: int, requests: int, duration: float
) -> tuple[list[float], list[str]]:
    """Keep ``concurrency`` requests in flight until ``requests`` were sent or time is up."""
    import grpc

    latencies: list[float] = []
    errors: list[str] = []
    n, total = len(encoded), max(requests, 4 * concurrency)
    next_index = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal next_index
        while next_index < total and time.perf_counter() < deadline:
            i = next_index
            next_index += 1
            t0 = time.perf_counter()
            try:
                await call(encoded[i % n], timeout=30)
            except grpc.RpcError as exc:
                errors.append(f"{exc.code().name}: {exc.details()}")
                continue
            latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors


async def _client(
    address: str,
    server_pid: int,
    metrics_port: int,
    texts: list[str],
    requests: int,
    duration: float,
) -> dict[str, Any]:
    from grpc import aio

    # Requests are serialized up front and responses left unparsed in the timed loops, so the
    # client (which shares the CPUs with the server) costs as little as a gRPC client can.
    encoded = [_encode_request(t) for t in texts]
    n = len(encoded)
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    async with aio.insecure_channel(address, options=options) as channel:
        call = channel.unary_unary(INFER_METHOD)
        check = [
            _decode_probabilities(await call(encoded[i % n], timeout=30))
            for i in range(CHECK_TEXTS)
        ]
        result: dict[str, Any] = {"check": check, "phases": []}
        for concurrency in CONCURRENCIES:
            await asyncio.gather(
                *(call(encoded[i % n], timeout=30) for i in range(WARMUP_REQUESTS))
            )
            before = scrape_metrics(metrics_port)
            server_cpu0, client_cpu0 = proc_cpu_seconds(server_pid), time.process_time()
            busy0, start = machine_busy_seconds(), time.perf_counter()
            latencies, errors = await _drive(call, encoded, concurrency, requests, duration)
            wall, busy = time.perf_counter() - start, machine_busy_seconds() - busy0
            server_cpu, client_cpu = proc_cpu_seconds(server_pid), time.process_time()
            after = scrape_metrics(metrics_port)
            result["phases"].append(
                {
                    "concurrency": concurrency,
                    "latencies": latencies,
                    "seconds": wall,
                    "server_cpu": server_cpu - server_cpu0,
                    "client_cpu": client_cpu - client_cpu0,
                    "machine_busy": busy,
                    "internals": internals(before, after),
                    "errors": len(errors),
                    "first_error": errors[0] if errors else "",
                }
            )
    return result


def client_main(
    address: str,
    server_pid: int,
    metrics_port: int,
    texts_file: str,
    requests: int,
    duration: float,
    out: Any,
) -> None:
    """Entry point of the spawned client process; puts its result (or an error) on ``out``."""
    try:
        texts = json.loads(Path(texts_file).read_text(encoding="utf-8"))
        result = asyncio.run(_client(address, server_pid, metrics_port, texts, requests, duration))
        out.put(result)
    except BaseException as exc:
        out.put({"error": f"{type(exc).__name__}: {exc}"})


def bench_server(
    server: ServerProcess, texts_file: Path, requests: int, duration: float, label: str = "server"
) -> tuple[list[Phase], list[tuple[str, list[float]]]]:
    """Drive the server from a spawned client process (texts go by file: spawn arguments travel
    through a pipe, and a large payload to a child that died at start-up would block forever)."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    address, pid, port = server.address, server.proc.pid, server.metrics_port
    args = (address, pid, port, str(texts_file), requests, duration, out)
    client = ctx.Process(target=client_main, args=args, name="bench-client")
    client.start()
    deadline = time.monotonic() + 120.0 + len(CONCURRENCIES) * (duration + 60.0)
    try:
        result: dict[str, Any] | None = None
        while result is None:
            try:
                result = out.get(timeout=1.0)
            except queue.Empty:
                if not client.is_alive():
                    with contextlib.suppress(queue.Empty):
                        result = out.get(timeout=1.0)
                    if result is None:
                        raise RuntimeError(
                            f"client process exited with {client.exitcode} and no result"
                        ) from None
                elif time.monotonic() > deadline:
                    raise TimeoutError("client process did not finish in time") from None
    finally:
        client.join(timeout=30)
        if client.is_alive():
            client.terminate()
            client.join(timeout=10)
    if "error" in result:
        raise RuntimeError(f"client failed: {result['error']}\nserver log:\n{server.tail()}")
    phases = []
    for p in result["phases"]:
        phase = summarize(
            f"{label} c={p['concurrency']}",
            p["latencies"],
            len(p["latencies"]),
            p["seconds"],
            p["server_cpu"],
            client_cpu_s=p["client_cpu"],
            errors=p["errors"],
            first_error=p["first_error"],
            machine_busy_s=p["machine_busy"],
        )
        phase.internals = p["internals"]
        phases.append(phase)
    return phases, result["check"]


# -------------------------------------------------------------------------------------- reporting


def machine_info(
    threads: int, providers: list[str], texts_source: str, n_texts: int
) -> dict[str, Any]:
    import grpc
    import onnxruntime as ort

    cpu_model = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    from service.config import load_model_definition

    definition = load_model_definition(REPO / "models", MODEL)
    return {
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": server_default_threads(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "grpcio": grpc.__version__,
        "providers": providers,
        "intra_op_threads": threads,
        "model": MODEL,
        "backbone": definition.backbone,
        "max_batch_size": definition.serving.max_batch_size,
        "max_queue_delay_ms": definition.serving.max_queue_delay_ms,
        "texts": f"{n_texts} from {texts_source}",
    }


def _fmt(value: float | None, spec: str = ".2f") -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return format(value, spec)


def _heading(title: str, header: str) -> None:
    """A table's title, its column header and a rule, after a blank line."""
    print()
    print(title)
    print(header)
    print("  " + "-" * (len(header) - 2))


def print_repeat(results: list[VariantResult]) -> None:
    """The --repeat runs: repeated traffic with the response cache off and on."""
    if not any(r.repeat for r in results):
        return
    _heading(
        "== repeated traffic (--repeat): the response cache off and on",
        (
            f"  {'variant':<8}{'mode':<24}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}{'texts/s':>10}"
            f"{'cpu ms':>9}{'hits':>7}{'other':>7}"
        ),
    )
    for r in results:
        for p in r.repeat:
            hits = p.internals.get("cache_hit_ratio", float("nan"))
            print(
                f"  {r.variant:<8}{p.name:<24}{p.requests:>6}{_fmt(p.p50_ms):>9}"
                f"{_fmt(p.p99_ms):>9}{_fmt(p.texts_per_s, '.1f'):>10}"
                f"{_fmt(p.cpu_ms_per_text):>9}{_fmt(hits, '.0%'):>7}{_fmt(p.other_cores):>7}"
            )
    print("  hits = share of measured requests the server answered from its response cache")


def print_peer(results: list[VariantResult]) -> None:
    """--peer: loopserve and the peer side by side, and loopserve ÷ peer."""
    pairs = [(r, r.peer) for r in results if r.peer is not None]
    if not pairs:
        return
    _heading(
        "== loopserve vs peer (same version dir, graph, tokenizer, ORT threads and client)",
        (
            f"  {'variant':<8}{'server':<11}{'p50 c=1':>9}{'p99 c=1':>9}{'tput c=16':>11}"
            f"{'ready s':>9}{'RSS MiB':>9}{'HWM MiB':>9}{'labels':>8}{'max|dp|':>10}"
        ),
    )
    for r, peer in pairs:
        rows = [
            ("loopserve", r.server, r.ready_s, r.rss_after_load_mib, r.hwm_mib, 1.0, 0.0),
            (
                peer.name,
                peer.phases,
                peer.ready_s,
                peer.rss_after_load_mib,
                peer.hwm_mib,
                peer.label_agreement,
                peer.max_prob_diff,
            ),
        ]
        for name, phases, ready, rss, hwm, labels, dp in rows:
            c1, c16 = at_concurrency(phases, 1), at_concurrency(phases, 16)
            print(
                f"  {r.variant:<8}{name:<11}{_fmt(c1.p50_ms):>9}{_fmt(c1.p99_ms):>9}"
                f"{_fmt(c16.texts_per_s, '.1f'):>11}{_fmt(ready):>9}{_fmt(rss, '.0f'):>9}"
                f"{_fmt(hwm, '.0f'):>9}{_fmt(labels, '.0%'):>8}{_fmt(dp, '.1e'):>10}"
            )
        ratios = peer_ratios(r.server, peer.phases)
        print(
            f"  {r.variant:<8}{'ratio':<11}{_fmt(ratios.p50_c1):>9}{_fmt(ratios.p99_c1):>9}"
            f"{_fmt(ratios.throughput_c16):>11}   loopserve / {peer.name}"
        )
    config = pairs[0][1].config
    print(
        f"  {config.get('server')} {config.get('mlserver')} (onnxruntime "
        f"{config.get('onnxruntime')}), parallel_workers {config.get('parallel_workers')}, "
        f"adaptive batching {config.get('adaptive_batching')} (max_batch_size "
        f"{config.get('max_batch_size')}, max_batch_time {config.get('max_batch_time_s')} s)\n"
        "  ratio = loopserve / peer: p50 and p99 below 1 and tput above 1 mean loopserve is "
        "better;\n  labels = top labels equal to loopserve's and max|dp| = largest probability "
        f"difference, on {CHECK_TEXTS} texts."
    )


def print_floor(results: list[VariantResult], cores: int) -> None:
    """The transport floor and the ratios it leaves a server, estimated (see FloorBounds)."""
    bounded = [(r, r.floor_bounds(cores)) for r in results]
    bounded = [(r, b) for r, b in bounded if b is not None]
    if not bounded:
        return
    _heading(
        "== the transport floor: a bare grpc.aio server answering a canned response, same client",
        (
            f"  {'variant':<8}{'floor p50 c=1':>14}{'floor p99':>11}{'floor tput':>12}"
            f"{'cpu ms/req':>12}{'est. p50 ratio':>16}{'est. tput ratio':>17}"
        ),
    )
    for r, bounds in bounded:
        c1, c16 = at_concurrency(r.floor, 1), at_concurrency(r.floor, 16)
        print(
            f"  {r.variant:<8}{_fmt(c1.p50_ms):>14}{_fmt(c1.p99_ms):>11}"
            f"{_fmt(c16.texts_per_s, '.0f'):>12}{_fmt(bounds.floor_cpu_ms):>12}"
            f"{_fmt(bounds.p50_ratio):>16}{_fmt(bounds.throughput_ratio):>17}"
        )
    print(
        "  cpu ms/req = the floor server's plus the client's CPU per request at c=16;\n"
        "  est. p50 ratio = (in-process p50 + floor p50) / in-process p50;\n"
        f"  est. tput ratio = {cores} cores / (in-process CPU per text at its best batch + cpu "
        "ms/req),\n  over the in-process best: a server that added nothing to the floor, with "
        "this client on\n  these cores. Estimates, not bounds: they divide figures from "
        "different minutes, and the\n  in-process CPU includes its ONNX Runtime workers' "
        "spinning (see FloorBounds)."
    )


def print_report(info: dict[str, Any], results: list[VariantResult], total_s: float) -> None:
    max_batch = int(info["max_batch_size"])
    print()
    print("== machine")
    for key, value in info.items():
        print(f"  {key:<18} {value}")
    _heading(
        "== latency and throughput (one text per request)",
        (
            f"  {'variant':<8}{'mode':<22}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}{'texts/s':>10}"
            f"{'cpu ms':>9}{'client cpu':>12}{'other':>7}{'errors':>8}"
        ),
    )
    for r in results:
        for p in [*r.in_process, *r.server, *(r.peer.phases if r.peer else []), *r.floor]:
            print(
                f"  {r.variant:<8}{p.name:<22}{p.requests:>6}{_fmt(p.p50_ms):>9}"
                f"{_fmt(p.p99_ms):>9}{_fmt(p.texts_per_s, '.1f'):>10}"
                f"{_fmt(p.cpu_ms_per_text):>9}{_fmt(p.client_cpu_ms_per_text):>12}"
                f"{_fmt(p.other_cores, '.2f'):>7}{p.errors:>8}"
            )
    print(
        "  cpu = ms of CPU per text (in-process: this process; server: the server process);\n"
        "  client cpu = the client process; other = CPUs busy meanwhile outside the benchmark\n"
        "  (other processes, steal): above ~0.1 the numbers are disturbed."
    )
    noisy = [p for r in results for p in [*r.in_process, *r.server] if p.other_cores > 0.25]
    if noisy:
        print(
            f"  WARNING: {len(noisy)} run(s) shared the machine with other load; rerun when idle."
        )
    _heading(
        "== inside the server during each gRPC run (means from its /metrics)",
        (
            f"  {'variant':<8}{'mode':<14}{'texts/batch':>12}{'request ms':>12}{'queue ms':>10}"
            f"{'batch ms':>10}{'client - request ms':>21}"
        ),
    )
    for r in results:
        for p in [*r.server, *(r.peer.phases if r.peer else [])]:
            i = p.internals
            outside = p.mean_ms - i.get("server_request_ms", float("nan"))
            print(
                f"  {r.variant:<8}{p.name:<14}{_fmt(i.get('mean_batch')):>12}"
                f"{_fmt(i.get('server_request_ms')):>12}{_fmt(i.get('queue_ms')):>10}"
                f"{_fmt(i.get('batch_ms')):>10}{_fmt(outside):>21}"
            )
    print(
        "  request = ModelInfer inside the server (decode to encode); queue = wait for the batcher;"
        "\n  batch = tokenize + ORT per batch; last column = client mean latency - request, i.e."
        "\n  gRPC transport, the client and the server's event loop outside the handler."
        "\n  A peer (--peer) reports texts per batch only (its runtime's peer_batch_texts)."
    )
    print_repeat(results)
    print_peer(results)
    print_floor(results, int(info["cpus_usable"]))
    _heading(
        "== server vs in-process",
        (
            f"  {'variant':<8}{'p50 c=1 / in-proc p50':>23}{'tput c=16 / in-proc best':>26}"
            f"{'ready s':>9}{'RSS MiB':>9}{'HWM MiB':>9}{'onnx MiB':>10}{'max|dp|':>10}"
        ),
    )
    for r in results:
        p50_ratio, tput_ratio = r.p50_ratio(), r.throughput_ratio()
        p50_ok = "ok" if p50_ratio <= TARGET_P50_RATIO else "MISS"
        tput_ok = "ok" if tput_ratio >= TARGET_THROUGHPUT_RATIO else "MISS"
        best = r.in_process_best()
        print(
            f"  {r.variant:<8}{f'{p50_ratio:.2f} (<={TARGET_P50_RATIO}) {p50_ok}':>23}"
            f"{f'{tput_ratio:.2f} (>={TARGET_THROUGHPUT_RATIO}) {tput_ok}':>26}"
            f"{_fmt(r.ready_s):>9}{_fmt(r.rss_after_load_mib, '.0f'):>9}"
            f"{_fmt(r.hwm_mib, '.0f'):>9}{_fmt(r.onnx_mib, '.1f'):>10}"
            f"{_fmt(r.max_prob_diff, '.1e'):>10}"
        )
        print(
            f"  {'':<8}in-process p50 {r.in_process_latency().p50_ms:.2f} ms, best "
            f"{best.texts_per_s:.1f} texts/s at {best.name.split()[-1]}; server {r.serving_file} "
            f"({r.prepared}); labels agree {r.label_agreement:.0%}; RSS after bench "
            f"{r.rss_after_bench_mib:.0f} MiB, HWM after load {r.hwm_after_load_mib:.0f} MiB"
            + (f"; server needed {r.server_starts} starts" if r.server_starts > 1 else "")
        )
        same = next((p for p in r.in_process if p.name == f"in-process batch={max_batch}"), None)
        if same is not None:
            ratio = r.server_phase(16).texts_per_s / same.texts_per_s
            print(
                f"  {'':<8}tput c=16 / in-process at the server's max_batch_size ({max_batch}): "
                f"{ratio:.2f}"
            )
    print()
    print(
        "  RSS = VmRSS of the server after ready; HWM = VmHWM after the load test; max|dp| = "
        "largest difference\n  between server and in-process probabilities on "
        f"{CHECK_TEXTS} texts. Server and client share the CPUs."
    )
    print(f"  total bench time {total_s:.1f}s")


# ------------------------------------------------------------------------------------------- main


def start_server(
    state: Path, models_dir: Path, work: Path, variant: str
) -> tuple[ServerProcess, float, int]:
    """A ready server, its seconds from process start to ready and how many starts it took.

    A start that fails is retried once (with fresh ports) and the retry is reported.
    """
    return start_ready(
        lambda attempt: ServerProcess(state, models_dir, work / f"{variant}-server-{attempt}.log"),
        variant,
    )


def start_ready(
    make: Callable[[int], ServerProcess], variant: str
) -> tuple[ServerProcess, float, int]:
    """``make(attempt)`` until one is ready (two attempts): the server, its seconds from process
    start to ready and its attempt."""
    for attempt in (1, 2):
        server = make(attempt)
        try:
            return server, server.wait_ready(), attempt
        except (RuntimeError, TimeoutError) as exc:
            server.stop()
            if attempt == 2:
                raise
            print(f"[{variant}] WARNING: server start failed, retrying once: {exc}", flush=True)
    raise AssertionError("unreachable")


def bench_repeat(
    state: Path,
    models_dir: Path,
    work: Path,
    variant: str,
    texts: list[str],
    args: argparse.Namespace,
) -> list[Phase]:
    """Repeated traffic apart: requests cycle through the first ``--repeat`` texts, on a server
    with the response cache off, then on one with it on (its warm-up requests fill it)."""
    texts_file = work / f"repeat-{args.repeat}.json"
    texts_file.write_text(json.dumps(texts[: args.repeat]), encoding="utf-8")
    phases: list[Phase] = []
    for cache, models in (("off", models_dir), ("on", models_dir_with_cache(models_dir, work))):
        print(f"[{variant}] repeated traffic, response cache {cache} ...", flush=True)
        server, _, _ = start_server(state, models, work, f"{variant}-repeat-cache-{cache}")
        with server:
            label = f"repeat cache {cache}"
            ran, _ = bench_server(server, texts_file, args.requests, args.duration, label)
        phases += ran
    return phases


def run_variant(
    variant: str,
    source_state: Path,
    models_dir: Path,
    work: Path,
    texts: list[str],
    args: argparse.Namespace,
    threads: int,
    providers: str,
) -> tuple[VariantResult, list[str]]:
    texts_file = work / "texts.json"
    if not texts_file.exists():
        texts_file.write_text(json.dumps(texts), encoding="utf-8")
    print(f"[{variant}] preparing state dir ...", flush=True)
    state, how = prepare_variant(source_state, variant, work)
    serving_file = "model.onnx" if variant == "fp32" else "model.int8.onnx"
    onnx_files = list((state / "models" / MODEL / "versions").glob(f"*/{serving_file}"))
    result = VariantResult(
        variant=variant,
        serving_file=serving_file,
        onnx_mib=onnx_files[0].stat().st_size / 2**20,
        prepared=how,
    )

    print(f"[{variant}] in-process ONNX Runtime ...", flush=True)
    loaded = load_version(state, threads, providers, args.spinning_on)
    session_providers = list(loaded.providers)
    result.in_process = bench_in_process(loaded, texts, args.requests, args.duration)
    reference = reference_probabilities(loaded, texts)
    labels = list(loaded.labels)
    del loaded  # free the session (and its threads) before the server runs

    print(f"[{variant}] server over gRPC ...", flush=True)
    server, result.ready_s, result.server_starts = start_server(state, models_dir, work, variant)
    with server:
        result.rss_after_load_mib = proc_status_mib(server.proc.pid, "VmRSS")
        result.hwm_after_load_mib = proc_status_mib(server.proc.pid, "VmHWM")
        result.server, check = bench_server(server, texts_file, args.requests, args.duration)
        result.rss_after_bench_mib = proc_status_mib(server.proc.pid, "VmRSS")
        result.hwm_mib = proc_status_mib(server.proc.pid, "VmHWM")
        response = raw_response(server.address, texts[0]) if args.floor else b""
    if args.floor:
        result.floor = bench_floor(response, work, variant, texts_file, args)
    if args.repeat:
        result.repeat = bench_repeat(state, models_dir, work, variant, texts, args)
    expected = [(labels[int(np.argmax(row))], row) for row in reference]
    result.label_agreement, result.max_prob_diff = agreement(check, expected)
    if args.peer:
        version_dir = onnx_files[0].parent
        result.peer = bench_peer(version_dir, serving_file, work, variant, texts_file, args, check)
    return result, session_providers


def agreement(
    answers: list[tuple[str, list[float]]], expected: list[tuple[str, list[float]]]
) -> tuple[float, float]:
    """The share of equal top labels, and the largest difference of a probability."""
    same = [label == want for (label, _), (want, _) in zip(answers, expected, strict=True)]
    got = np.asarray([probs for _, probs in answers], dtype=np.float64)
    want = np.asarray([probs for _, probs in expected], dtype=np.float64)
    return float(np.mean(same)), float(np.abs(got - want).max())


def bench_peer(
    version_dir: Path,
    serving_file: str,
    work: Path,
    variant: str,
    texts_file: Path,
    args: argparse.Namespace,
    loopserve_check: list[tuple[str, list[float]]],
) -> PeerResult:
    """MLServer (--peer mlserver) on loopserve's version dir and ONNX Runtime settings, driven
    by the same client phases; its answers checked against loopserve's."""
    from bench.peers.mlserver_config import RuntimeParameters

    runtime = RuntimeParameters(
        str(version_dir), serving_file, args.threads_used, args.spinning_on, args.spin_us
    )
    batch = args.max_batch_size if args.peer_batching == "match" else 0
    print(f"[{variant}] peer: MLServer over gRPC ...", flush=True)
    server, ready_s, starts = start_ready(
        lambda attempt: MLServerProcess(
            work / f"{variant}-mlserver-{attempt}",
            runtime,
            batch,
            work / f"{variant}-mlserver-{attempt}.log",
        ),
        f"{variant} mlserver",
    )
    peer = PeerResult("mlserver", {**args.peer_info, "max_batch_size": batch}, ready_s=ready_s)
    peer.starts = starts
    with server:
        peer.rss_after_load_mib = proc_status_mib(server.proc.pid, "VmRSS")
        peer.phases, check = bench_server(
            server, texts_file, args.requests, args.duration, "mlserver"
        )
        peer.hwm_mib = proc_status_mib(server.proc.pid, "VmHWM")
    peer.label_agreement, peer.max_prob_diff = agreement(check, loopserve_check)
    return peer


def bench_floor(
    response: bytes, work: Path, variant: str, texts_file: Path, args: argparse.Namespace
) -> list[Phase]:
    """The transport floor answering loopserve's ``response``, driven by the same client."""
    response_file = work / f"{variant}-response.bin"
    response_file.write_bytes(response)
    print(f"[{variant}] transport floor over gRPC ...", flush=True)
    server, _, _ = start_ready(
        lambda attempt: FloorServerProcess(response_file, work / f"{variant}-floor-{attempt}.log"),
        f"{variant} floor",
    )
    with server:
        phases, _ = bench_server(server, texts_file, args.requests, args.duration, "floor")
    return phases


def peer_info(args: argparse.Namespace) -> dict[str, Any]:
    """What the --peer server runs and how it is set up (empty without --peer); a missing peer
    environment stops the bench here, before anything is built."""
    if not args.peer:
        return {}
    from bench.peers.mlserver_config import BATCH_TIME_S, mlserver_executable, peer_versions

    mlserver_executable()  # a SystemExit naming the set-up script when MLServer is missing
    return {
        "server": args.peer,
        **peer_versions(),
        "parallel_workers": 0,
        "adaptive_batching": args.peer_batching,
        "max_batch_time_s": BATCH_TIME_S if args.peer_batching == "match" else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--state-dir", type=Path, help="built state dir (built if missing; default: a temp dir)")
    add("--models-dir", type=Path, default=REPO / "models", help="model definitions")
    add("--requests", type=int, default=1000, help="requests per measured run (default 1000)")
    add("--duration", type=float, default=20.0, help="seconds cap per measured run (default 20)")
    add("--threads", type=int, help="intra-op threads for both (default: model.toml / all cores)")
    add(
        "--spinning",
        choices=("model", "on", "off"),
        default="model",
        help="ONNX Runtime thread spinning for both (default: model.toml's thread_spinning)",
    )
    add("--variants", default="fp32,int8", help="fp32, int8 or both (default fp32,int8)")
    add(
        "--repeat",
        type=int,
        default=0,
        metavar="N",
        help="also measure repeated traffic (N distinct texts, cycled) with the response cache "
        "off and on (default 0: not measured)",
    )
    add(
        "--peer",
        choices=("mlserver",),
        help="also measure MLServer on the same version and traffic (needs "
        "bench/peers/mlserver-venv.sh first)",
    )
    add(
        "--peer-batching",
        choices=("match", "off"),
        default="match",
        help="the peer's adaptive batching: match loopserve's max_batch_size without waiting "
        "(default), or off",
    )
    add(
        "--drift",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="loopserve with the model's drift monitoring (default), or --no-drift without it, "
        "like the peer",
    )
    add(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the transport floor, a bare gRPC server (default: on)",
    )
    add("--json", type=Path, help="also write the results as JSON here")
    add("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.duration <= 0:
        parser.error("--requests must be >= 1 and --duration > 0")
    if args.repeat < 0:
        parser.error("--repeat must be >= 0 (0: no repeated-traffic runs)")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or any(v not in ("fp32", "int8") for v in variants):
        parser.error("--variants takes fp32, int8 or both")

    args.peer_info = peer_info(args)
    started = time.perf_counter()
    from service.config import load_model_definition

    work = Path(tempfile.mkdtemp(prefix="loopserve-bench-"))
    try:
        definition = load_model_definition(args.models_dir, MODEL)
        threads = args.threads if args.threads is not None else definition.serving.intra_op_threads
        threads = threads or server_default_threads()
        spinning = (
            definition.serving.thread_spinning
            if args.spinning == "model"
            else args.spinning == "on"
        )
        args.spinning_on = spinning
        args.spin_us = definition.serving.thread_spin_us
        args.threads_used = threads
        args.max_batch_size = definition.serving.max_batch_size
        models_dir = models_dir_with_threads(args.models_dir, threads, work, spinning)
        if not args.drift:
            models_dir = models_dir_without_drift(models_dir, work)
        source_state = (args.state_dir or work / "build").resolve()
        build_s = ensure_built(source_state, args.models_dir)
        texts, source = load_texts()
        spin = "on" if spinning else "off"
        print(
            f"{len(texts)} texts from {source}; {threads} intra-op threads, spinning {spin}",
            flush=True,
        )

        results: list[VariantResult] = []
        providers: list[str] = []
        for variant in variants:
            result, providers = run_variant(
                variant,
                source_state,
                models_dir,
                work,
                texts,
                args,
                threads,
                definition.serving.providers,
            )
            results.append(result)

        info = machine_info(threads, providers, source, len(texts))
        info["server_thread_spin_us"] = args.spin_us
        info["loopserve_drift"] = (
            "model's settings" if args.drift else "off ([drift] detectors = [])"
        )
        if args.peer:
            info["peer"] = args.peer_info
        if build_s is not None:
            info["model_build_s"] = round(build_s, 1)
        total = time.perf_counter() - started
        print_report(info, results, total)
        if args.json is not None:
            report = {
                "machine": info,
                "targets": {
                    "p50_ratio_max": TARGET_P50_RATIO,
                    "throughput_ratio_min": TARGET_THROUGHPUT_RATIO,
                },
                "results": [
                    {
                        **asdict(r),
                        "p50_ratio": r.p50_ratio(),
                        "throughput_ratio": r.throughput_ratio(),
                        "peer_ratios": None if r.peer is None else asdict(r.peer_ratios()),
                        "floor_bounds": None
                        if not r.floor
                        else asdict(floor_bounds(r, int(info["cpus_usable"]))),
                    }
                    for r in results
                ],
                "total_s": total,
            }
            args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            print(f"  wrote {args.json}")
        disagree = [r.variant for r in results if r.peer and r.peer.label_agreement < 1.0]
        if disagree:
            print(f"  ERROR: the peer's top labels differ from loopserve's in {disagree}")
            return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
