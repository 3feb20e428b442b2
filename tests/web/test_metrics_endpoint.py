"""service.web.MetricsServer beyond auth (tests/api/test_auth.py): where the rendering runs,
what other paths and methods get, and what the composed server logs."""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from loop_thread import serving
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from service.web import MetricsServer


class ThreadRecorder(Collector):
    """A collector that records the thread each collection runs on."""

    def __init__(self) -> None:
        self.threads: list[str] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.threads.append(threading.current_thread().name)
        yield GaugeMetricFamily("loopserve_test_gauge", "A gauge for the test.", value=1)


def get(url: str, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_are_rendered_off_the_event_loop_on_one_thread() -> None:
    registry = CollectorRegistry()
    recorder = ThreadRecorder()
    registry.register(recorder)
    server = MetricsServer(registry, "127.0.0.1", 0)
    with serving(server) as loop:
        loop_thread = loop.run(_thread_name())
        for _ in range(3):
            status, body = get(f"http://127.0.0.1:{server.port}/metrics")
            assert status == 200 and "loopserve_test_gauge 1.0" in body
    assert len(set(recorder.threads)) == 1
    assert recorder.threads[0].startswith("metrics-render") and loop_thread not in recorder.threads


async def _thread_name() -> str:
    return threading.current_thread().name


@pytest.mark.parametrize(
    ("path", "method", "status"),
    [("/", "GET", 404), ("/metrics/extra", "GET", 404), ("/metrics", "POST", 405)],
)
def test_only_get_metrics_is_served(path: str, method: str, status: int) -> None:
    registry = CollectorRegistry()
    Counter("loopserve_test_calls", "A counter for the test.", registry=registry).inc()
    server = MetricsServer(registry, "127.0.0.1", 0)
    with serving(server):
        answer = get(f"http://127.0.0.1:{server.port}{path}", method)
    assert answer[0] == status
    assert "loopserve_test_calls" not in answer[1]
    if status == 404:
        assert answer[1] == "not found: the metrics are at /metrics\n"


def test_the_server_logs_the_metrics_port_it_bound(
    start_app: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="service.app")
    running = start_app(metrics_port=0)
    port = running.app.metrics_port
    assert port > 0
    ready = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("serving "))
    assert re.search(rf"metrics on :{port}/metrics at 127\.0\.0\.1", ready), ready
    assert get(f"http://127.0.0.1:{port}/metrics")[0] == 200
