"""Console parts on their own: sessions, image typing, the same-origin rule, the bind rule, the
plot, and a server without tokens (loopback, anonymous with every scope)."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import RunningApp
from PIL import Image
from starlette.datastructures import Headers

from service.config import ServerSettings
from service.console._guard import ConsoleGuard
from service.console._images import image_response, sniff
from service.console._plot import accuracy_svg
from service.console._sessions import Sessions
from service.errors import ConfigError
from service.security import IMPLIED, Principal, Scope


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


def test_sessions_expire_end_and_stay_bounded() -> None:
    now = [1000.0]
    sessions = Sessions(ttl_s=60, capacity=2, clock=lambda: now[0])
    viewer = Principal("viewer", IMPLIED[Scope.INFER])
    first = sessions.create(viewer)
    assert sessions.get(first.id) is first and first.csrf != first.id
    assert len(first.id) >= 40 and sessions.get("guess") is None and sessions.get(None) is None
    now[0] += 1
    second, third = sessions.create(viewer), sessions.create(viewer)
    assert len(sessions) == 2 and sessions.get(first.id) is None  # the oldest made room
    sessions.end(second.id)
    assert sessions.get(second.id) is None
    now[0] += 61
    assert sessions.get(third.id) is None and len(sessions) == 0
    assert third.csrf_matches(third.csrf) and not third.csrf_matches("x")


def test_images_are_typed_by_their_bytes_and_never_served_as_html() -> None:
    assert sniff(png()) == "image/png"
    assert sniff(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    shown = image_response(png())
    assert shown.media_type == "image/png"
    assert shown.headers["content-disposition"] == "inline"
    html = image_response(b"<html><script>alert(1)</script></html>")
    assert html.media_type == "application/octet-stream"
    assert html.headers["content-disposition"].startswith("attachment")


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"host": "127.0.0.1:8080", "origin": "http://127.0.0.1:8080"}, True),
        ({"host": "127.0.0.1:8080", "referer": "http://127.0.0.1:8080/models/x/versions"}, True),
        ({"host": "127.0.0.1:8080", "origin": "http://127.0.0.1:9999"}, False),
        ({"host": "127.0.0.1:8080", "origin": "https://127.0.0.1:8080"}, False),
        ({"host": "127.0.0.1:8080", "origin": "null"}, False),
        ({"host": "127.0.0.1:8080"}, False),
        ({"host": "127.0.0.1:8080", "referer": "http://127.0.0.1:8080.evil.example/"}, False),
    ],
)
def test_same_origin_rule(headers: dict[str, str], allowed: bool) -> None:
    guard = ConsoleGuard(app=lambda scope, receive, send: None, tls=False)
    assert guard.same_origin(Headers(headers)) is allowed


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8080", True),
        ("localhost:8080", True),
        ("[::1]:8080", True),
        ("LOCALHOST", True),
        ("evil.example:8080", False),
        ("127.0.0.1.evil.example:8080", False),
        ("", False),
    ],
)
def test_on_loopback_only_loopback_host_names_are_answered(host: str, allowed: bool) -> None:
    hosts = frozenset({"localhost", "127.0.0.1", "::1"})
    guard = ConsoleGuard(app=lambda scope, receive, send: None, tls=False, hosts=hosts)
    assert guard.host_allowed(host) is allowed
    assert ConsoleGuard(app=guard, tls=False).host_allowed("anything.example")


def test_a_console_beyond_loopback_needs_tokens_or_insecure() -> None:
    with pytest.raises(
        ConfigError, match=r"refusing to serve the console on 0\.0\.0\.0 without tokens"
    ):
        ServerSettings(console_host="0.0.0.0").validate()
    ServerSettings(console_host="0.0.0.0", console=False).validate()
    ServerSettings(console_host="0.0.0.0", insecure=True).validate()
    ServerSettings(console_host="0.0.0.0", tokens="ops:admin:0123456789abcdef0").validate()
    warnings = ServerSettings(console_host="0.0.0.0", tokens="ops:admin:0123456789abcdef0")
    assert any(
        "console on 0.0.0.0 without TLS" in w for w in warnings.exposure_warnings(True, True)
    )
    with pytest.raises(ConfigError, match="console_port must be in"):
        ServerSettings(console_port=70000).validate()


def test_the_accuracy_plot_is_plain_svg() -> None:
    svg = str(accuracy_svg([1, 2, 3], {"holdout": [0.8, 0.9, float("nan")], "live": [0.7]}))
    assert svg.startswith("<svg") and "style=" not in svg and "<script" not in svg
    assert svg.count('<circle class="series holdout"') == 2
    assert svg.count('<circle class="series live"') == 1
    assert str(accuracy_svg([], {})) == ""


def test_without_tokens_the_console_acts_as_anonymous_with_every_scope(
    start_app: Callable[..., RunningApp], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.app")
    server = start_app(console_port=0)
    origin = f"http://127.0.0.1:{server.app.console_port}"
    assert f"console at {origin}/" in caplog.text  # what `loopserve serve` prints
    with httpx.Client(base_url=origin, follow_redirects=False, timeout=30) as client:
        assert client.get("/login").headers["location"] == "/"
        page = client.get("/models/tiny/versions")
        assert page.status_code == 200 and "set-cookie" in page.headers
        assert 'data-testid="principal">anonymous<' in page.text
        assert 'data-testid="rollback-2"' in page.text  # admin's actions are offered
        again = client.get("/")
        assert "set-cookie" not in again.headers  # the same session
        refused = client.post(
            "/models/tiny/rollback", data={"version": "2"}, headers={"Origin": origin}
        )
        assert refused.status_code == 403  # no CSRF token: refused even without tokens
        # A page whose name was re-pointed at 127.0.0.1 (DNS rebinding) reads nothing.
        rebound = client.get("/", headers={"Host": f"evil.example:{server.app.console_port}"})
        assert rebound.status_code == 403 and "loopback host name" in rebound.text


def test_no_console_serves_none(start_app: Callable[..., RunningApp], tmp_path: Path) -> None:
    server = start_app(console=False)
    assert server.app._console is None


def test_serve_flags_for_the_console(capsys: pytest.CaptureFixture[str]) -> None:
    from service.cli import main

    assert main(["serve", "--check", "--console-port", "0"]) == 0
    assert main(["serve", "--check", "--console-host", "0.0.0.0"]) == 2
    assert "refusing to serve the console on 0.0.0.0" in capsys.readouterr().err
    assert main(["serve", "--check", "--console-host", "0.0.0.0", "--no-console"]) == 0
    assert main(["serve", "--check", "--console-port", "70000"]) == 2
    assert "console_port must be in [0, 65535]" in capsys.readouterr().err


def test_the_history_gives_request_rate_and_latency_quantiles_over_its_window() -> None:
    import asyncio

    from service.console._history import History
    from service.drift import DriftStatus
    from service.metrics import Metrics

    metrics = Metrics()
    clock = iter([1000.0, 1060.0])

    async def status(model: str) -> DriftStatus:
        return DriftStatus(model, 3, alarm=False, estimated_accuracy=0.9)

    history = History(metrics, status, ["m"], points=10, clock=lambda: next(clock))
    assert math.isnan(history.traffic("m").rate)  # no window yet

    async def run() -> None:
        metrics.requests.labels("m", "1", "OK").inc(40)  # before the window: not counted
        await history.sample()
        for seconds in [0.002] * 50 + [0.2] * 10:
            metrics.request_latency.labels("m").observe(seconds)
        metrics.requests.labels("m", "1", "OK").inc(60)
        await history.sample()

    asyncio.run(run())
    traffic = history.traffic("m")
    assert traffic.seconds == 60 and traffic.rate == 1.0
    assert 1.0 <= traffic.p50_ms <= 2.5 and 100 <= traffic.p99_ms <= 250
    points = history.series("m")
    assert [p.version for p in points] == [3, 3] and points[-1].estimated_accuracy == 0.9
    assert (
        History(metrics, status, ["m"]).traffic("m").rate
        != History(metrics, status, ["m"]).traffic("m").rate
    )  # NaN
