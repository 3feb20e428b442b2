"""2,000 slow clients on the metrics port of a real ``loopserve serve`` process: predictions keep
their latency, the process keeps its thread count, and SIGTERM still stops it in time.

Each client sends ``GET /metrics HTTP/1.1\\r\\n`` and nothing more, and connects again a second
after the server closes it (tests/web/slow_clients.py, a process of its own).
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import TINY_MODEL
from test_cli import ServerProcess
from waiting import wait_until

from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.web import HttpLimits

SLOW_CLIENTS = Path(__file__).with_name("slow_clients.py")
CLIENTS = 2000
RECONNECT_DELAY_S = 1.0
IDLE_S = 6.0
FLOOD_S = 12.0  # longer than the header deadline: the first wave is cut and reconnects
DRAIN_S = 5.0  # --drain-seconds of ServerProcess


def request() -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=TINY_MODEL)
    message.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
        b"hello team"
    )
    return message


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def scrape_when_quiet(port: int, timeout: float = 30.0) -> str:
    """/metrics, asked again until the server answers 200 (it answers 503 while it is full)."""

    def scrape() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                return str(response.read().decode())
        except (OSError, http.client.HTTPException):  # 503, reset, closed unanswered
            return None

    return wait_until(scrape, timeout, "a scrape answered after the flood paused")


def closed_unanswered(text: str, reason: str) -> float:
    name = f'loopserve_http_connections_closed_total{{endpoint="metrics",reason="{reason}"}}'
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def logged_seconds(log: list[str], first: str, last: str) -> float:
    """Seconds between the log lines ending in ``first`` and ``last`` (their timestamps)."""

    def at(message: str) -> datetime.datetime:
        line = next(line for line in log if line.rstrip().endswith(message))
        return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")

    return (at(last) - at(first)).total_seconds()


def predict_for(
    stub: GRPCInferenceServiceStub, seconds: float, watch: Callable[[], None]
) -> np.ndarray:
    """Latencies (ms) of one ModelInfer after another for ``seconds``; ``watch`` every 20th."""
    latencies = []
    message = request()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        stub.ModelInfer(message, timeout=20)
        latencies.append((time.perf_counter() - started) * 1000)
        if len(latencies) % 20 == 0:
            watch()
    return np.array(latencies)


@pytest.mark.slow
def test_slow_metrics_clients_leave_predictions_threads_and_shutdown_alone(
    models_dir: Path, state_dir: Path
) -> None:
    server = ServerProcess(models_dir, state_dir)
    pid = server.proc.pid
    flood: subprocess.Popen[str] | None = None
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        stub = GRPCInferenceServiceStub(channel)
        predict_for(stub, 1.0, lambda: None)  # warm up both ends
        seen = {"threads": threads(pid), "files": open_files(pid)}
        baseline = dict(seen)

        def watch() -> None:
            seen["threads"] = max(seen["threads"], threads(pid))
            seen["files"] = max(seen["files"], open_files(pid))

        cpu = cpu_seconds(pid)
        idle = predict_for(stub, IDLE_S, watch)
        cpu_idle, cpu = cpu_seconds(pid) - cpu, cpu_seconds(pid)
        flood = subprocess.Popen(
            [sys.executable, str(SLOW_CLIENTS), "127.0.0.1", str(server.metrics_port),
             str(CLIENTS), str(RECONNECT_DELAY_S)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert flood.stdin is not None and flood.stdout is not None
        assert flood.stdout.readline().strip() == "ready"
        cap = HttpLimits().max_connections
        wait_until(lambda: open_files(pid) >= baseline["files"] + cap, 30)  # the server is full
        seen = dict(baseline)
        cpu = cpu_seconds(pid)
        flooded = predict_for(stub, FLOOD_S, watch)
        cpu_flood = cpu_seconds(pid) - cpu
        channel.close()

        # Paused, the clients send nothing: the server cuts them at the header deadline and
        # answers scrapes again, counting what it closed.
        flood.send_signal(signal.SIGSTOP)
        scraped = scrape_when_quiet(server.metrics_port)
        flood.send_signal(signal.SIGCONT)

        stopping = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)  # while the flood goes on
        code = server.proc.wait(60)
        stop_s = time.monotonic() - stopping
        flood.stdin.close()
        counts = json.loads(flood.stdout.readline())
    finally:
        if flood is not None and flood.poll() is None:
            flood.kill()
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.wait(10)

    p99_idle, p99_flood = np.percentile(idle, 99), np.percentile(flooded, 99)
    log = "".join(server.log)
    drain_s = logged_seconds(server.log, "signal received: draining", "stopped")
    print(
        f"\nModelInfer p50/p99 ms: idle {np.median(idle):.2f}/{p99_idle:.2f} ({len(idle)} calls), "
        f"flood {np.median(flooded):.2f}/{p99_flood:.2f} ({len(flooded)} calls); server CPU "
        f"{cpu_idle / IDLE_S:.0%} idle, {cpu_flood / FLOOD_S:.0%} flood; "
        f"threads {baseline['threads']} -> at most {seen['threads']}; open files "
        f"{baseline['files']} -> at most {seen['files']}; SIGTERM to stopped "
        f"{drain_s:.2f}s, to exit {stop_s:.2f}s; "
        f"clients: {counts}; server log lines {len(server.log)}; load {os.getloadavg()[0]:.1f}"
    )
    assert code == 0, log
    # The server let in as many as its cap, closed them at the header deadline, and let in
    # waiting ones as room came.
    assert counts["dropped"] >= cap and counts["connected"] > cap, counts
    assert closed_unanswered(scraped, "header_timeout") >= cap
    # No thread per connection, and no more sockets than the cap.
    assert seen["threads"] <= baseline["threads"] + 2
    assert seen["files"] <= baseline["files"] + cap + 4  # render thread's, a scrape's
    # The server stops within its drain time; the interpreter's exit after that (threads,
    # ONNX Runtime) takes a second or more on a loaded machine.
    assert drain_s < DRAIN_S and stop_s < 2 * DRAIN_S
    assert "Traceback" not in log
    # Predictions are served from the same event loop: the flood must not stall them. The target
    # is 2x the idle p99 (see the figures printed above), but on a shared, loaded 2-core machine
    # scheduling noise alone moves the p99 of 1 ms calls by tens of ms, so the assertion is wide.
    # The threaded endpoint this replaced failed it by seconds (calls timed out after 20 s).
    assert p99_flood <= max(2 * p99_idle, p99_idle + 100.0), (p99_idle, p99_flood)
