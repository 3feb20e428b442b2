"""service.web.HttpServer: every connection is under a deadline, the connection cap answers 503
at accept, TLS, binding, stopping and a quiet log. Clients are raw sockets, so that a test can
stop half-way through a request."""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import ssl
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loop_thread import LoopThread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from waiting import wait_until

from service.errors import ConfigError
from service.security import TlsFiles
from service.web import HttpLimits, HttpServer

FULL_REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"
PARTIAL_REQUEST = b"GET / HTTP/1.1\r\n"
WAIT_S = 10.0  # the most a test waits for something that should happen well before


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


async def hang(request: Request) -> PlainTextResponse:
    await asyncio.Event().wait()
    raise AssertionError("never answered")


APP = Starlette(routes=[Route("/", hello), Route("/hang", hang)])


class Servers:
    """Servers of APP on 127.0.0.1:0, on one loop thread."""

    def __init__(self) -> None:
        self.loop = LoopThread()
        self.started: list[HttpServer] = []

    def start(
        self,
        tls: TlsFiles | None = None,
        on_closed: Callable[[str], None] | None = None,
        **limits: float,
    ) -> HttpServer:
        server = HttpServer(
            APP, "127.0.0.1", 0, name="test", limits=HttpLimits(**limits), tls=tls,
            on_closed=on_closed,
        )  # fmt: skip
        self.loop.run(server.start())
        self.started.append(server)
        return server

    def close(self) -> None:
        for server in self.started:
            self.loop.run(server.stop())
        self.loop.close()


@pytest.fixture
def servers() -> Iterator[Servers]:
    servers = Servers()
    yield servers
    servers.close()


def connect(server: HttpServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length body, leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        ).split(b":")[1]
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_connection_that_never_completes_its_headers_is_closed_at_the_deadline(
    servers: Servers,
) -> None:
    server = servers.start(header_timeout_s=0.3)
    with connect(server) as sock:
        sock.sendall(PARTIAL_REQUEST)
        assert read_until_closed(sock) == b""  # closed without a response
    wait_until(lambda: server.open_connections == 0)


def test_a_connection_that_sends_nothing_is_closed_at_the_deadline(
    servers: Servers,
) -> None:
    server = servers.start(header_timeout_s=0.3)
    with connect(server) as sock:
        assert read_until_closed(sock) == b""


def test_headers_dribbled_a_byte_at_a_time_do_not_move_the_deadline(
    servers: Servers,
) -> None:
    server = servers.start(header_timeout_s=0.5)
    request = PARTIAL_REQUEST + b"X-Pad: " + b"a" * 1000 + b"\r\n\r\n"
    with connect(server) as sock:
        for byte in request:
            sock.sendall(bytes([byte]))
            # A byte every 20 ms, unless the server closed the connection meanwhile.
            if select.select([sock], [], [], 0.02)[0]:
                assert read_until_closed(sock) == b""
                break
        else:
            raise AssertionError("the whole request was sent: the deadline never came")


def test_a_kept_alive_connection_gets_a_header_deadline_for_its_next_request(
    servers: Servers,
) -> None:
    server = servers.start(header_timeout_s=0.3, keep_alive_s=60)
    with connect(server) as sock:
        sock.sendall(FULL_REQUEST)
        assert read_response(sock).endswith(b"hello")
        sock.sendall(PARTIAL_REQUEST)
        assert read_until_closed(sock) == b""


def test_a_partial_request_pipelined_behind_a_full_one_gets_the_header_deadline(
    servers: Servers,
) -> None:
    server = servers.start(header_timeout_s=0.3, keep_alive_s=60)
    with connect(server) as sock:
        sock.sendall(FULL_REQUEST + PARTIAL_REQUEST)
        assert read_response(sock).endswith(b"hello")
        assert read_until_closed(sock) == b""


def test_an_idle_kept_alive_connection_is_closed_after_keep_alive(
    servers: Servers,
) -> None:
    server = servers.start(keep_alive_s=1)
    with connect(server) as sock:
        sock.sendall(FULL_REQUEST)
        assert read_response(sock).endswith(b"hello")
        assert read_until_closed(sock) == b""


def test_requests_on_a_kept_alive_connection_are_answered(servers: Servers) -> None:
    server = servers.start()
    with connect(server) as sock:
        for _ in range(3):
            sock.sendall(FULL_REQUEST)
            assert read_response(sock).startswith(b"HTTP/1.1 200 OK")


def test_a_response_not_sent_in_time_is_cut(servers: Servers) -> None:
    server = servers.start(request_timeout_s=0.3)
    with connect(server) as sock:
        sock.sendall(b"GET /hang HTTP/1.1\r\nHost: test\r\n\r\n")
        assert read_until_closed(sock) == b""
    wait_until(lambda: server.open_connections == 0)


def test_connections_over_the_cap_wait_in_the_accept_queue_until_there_is_room(
    servers: Servers,
) -> None:
    server = servers.start(max_connections=2, header_timeout_s=60)
    held = [connect(server), connect(server)]
    wait_until(lambda: server.open_connections == 2)
    with connect(server) as waiting:  # connected by the kernel, not accepted
        waiting.sendall(FULL_REQUEST)
        held[0].sendall(FULL_REQUEST)  # the admitted ones are served
        assert read_response(held[0]).endswith(b"hello")
        assert server.open_connections == 2
        assert select.select([waiting], [], [], 0.2)[0] == []  # no answer while full
        held[1].close()
        assert read_response(waiting).endswith(b"hello")  # let in once there was room
    held[0].close()
    wait_until(lambda: server.open_connections == 0)


def test_connections_closed_unanswered_are_reported_with_the_reason(servers: Servers) -> None:
    reasons: list[str] = []
    server = servers.start(
        on_closed=reasons.append, max_connections=1, header_timeout_s=0.5, request_timeout_s=0.3
    )
    with connect(server) as waiting:
        assert read_until_closed(waiting) == b""
    wait_until(lambda: server.open_connections == 0)
    with connect(server) as hanging:
        hanging.sendall(b"GET /hang HTTP/1.1\r\nHost: test\r\n\r\n")
        assert read_until_closed(hanging) == b""
    wait_until(lambda: len(reasons) == 2)
    assert reasons == ["header_timeout", "response_timeout"]


def test_oversized_headers_are_answered_400(servers: Servers) -> None:
    server = servers.start(max_header_bytes=1024)
    with connect(server) as sock:
        sock.sendall(PARTIAL_REQUEST + b"X-Pad: " + b"a" * 4096 + b"\r\n\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 400 ")


def test_many_open_connections_take_no_thread(servers: Servers) -> None:
    server = servers.start(max_connections=300, header_timeout_s=60)
    before = threading.active_count()
    sockets = [connect(server) for _ in range(200)]
    try:
        for sock in sockets:
            sock.sendall(PARTIAL_REQUEST)
        wait_until(lambda: server.open_connections == 200)
        assert threading.active_count() <= before  # other tests' threads may still be ending
    finally:
        for sock in sockets:
            sock.close()


def test_stop_closes_waiting_connections_and_cuts_hanging_responses(
    servers: Servers,
) -> None:
    server = servers.start(shutdown_grace_s=0.5)
    with connect(server) as waiting, connect(server) as hanging:
        waiting.sendall(PARTIAL_REQUEST)
        hanging.sendall(b"GET /hang HTTP/1.1\r\nHost: test\r\n\r\n")
        wait_until(lambda: server.open_connections == 2)
        port = server.port
        servers.loop.run(server.stop())
        assert read_until_closed(waiting) == b""
        assert read_until_closed(hanging) == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)


def test_port_zero_picks_a_free_port_and_a_taken_port_is_an_error_naming_the_endpoint(
    servers: Servers,
) -> None:
    first = servers.start()
    assert first.port > 0
    taken = HttpServer(APP, "127.0.0.1", first.port, name="console")
    with pytest.raises(OSError, match=rf"cannot bind console port 127.0.0.1:{first.port}: "):
        servers.loop.run(taken.start())


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    loop = LoopThread()
    server = HttpServer(APP, "[::1]", 0, name="test")
    try:
        try:
            loop.run(server.start())
        except OSError as exc:
            pytest.skip(f"IPv6 loopback not available: {exc}")
        with urllib.request.urlopen(f"http://[::1]:{server.port}/", timeout=WAIT_S) as response:
            assert response.read() == b"hello"
        loop.run(server.stop())
    finally:
        loop.close()


def test_tls_serves_https(servers: Servers, tls_files: dict[str, Path]) -> None:
    server = servers.start(tls=TlsFiles(tls_files["server.pem"], tls_files["server.key"]))
    context = ssl.create_default_context(cafile=str(tls_files["server-ca.pem"]))
    url = f"https://127.0.0.1:{server.port}/"
    with urllib.request.urlopen(url, context=context, timeout=WAIT_S) as response:
        assert response.read() == b"hello"


def test_mutual_tls_needs_a_client_certificate_and_a_failed_handshake_is_not_logged(
    servers: Servers, tls_files: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    tls = TlsFiles(tls_files["server.pem"], tls_files["server.key"], tls_files["client-ca.pem"])
    server = servers.start(tls=tls)
    url = f"https://127.0.0.1:{server.port}/"
    context = ssl.create_default_context(cafile=str(tls_files["server-ca.pem"]))
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        urllib.request.urlopen(url, context=context, timeout=WAIT_S).read()
    context.load_cert_chain(tls_files["client.pem"], tls_files["client.key"])
    with urllib.request.urlopen(url, context=context, timeout=WAIT_S) as response:
        assert response.read() == b"hello"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []


def test_a_tls_handshake_not_made_in_time_is_cut(
    servers: Servers, tls_files: dict[str, Path]
) -> None:
    tls = TlsFiles(tls_files["server.pem"], tls_files["server.key"])
    server = servers.start(tls=tls, header_timeout_s=0.3, max_connections=1)
    with connect(server) as silent:  # never says hello
        assert read_until_closed(silent) == b""
    context = ssl.create_default_context(cafile=str(tls_files["server-ca.pem"]))
    url = f"https://127.0.0.1:{server.port}/"
    with urllib.request.urlopen(url, context=context, timeout=WAIT_S) as response:
        assert response.read() == b"hello"


def test_unusable_tls_files_are_config_errors_naming_them(
    tls_files: dict[str, Path], tmp_path: Path
) -> None:
    loop = LoopThread()
    try:
        missing = TlsFiles(tmp_path / "absent.pem", tls_files["server.key"])
        with pytest.raises(ConfigError, match=r"cannot read TLS certificate .*absent\.pem"):
            loop.run(HttpServer(APP, "127.0.0.1", 0, name="test", tls=missing).start())
        mismatched = TlsFiles(tls_files["server.pem"], tls_files["client.key"])
        with pytest.raises(
            ConfigError, match=r"test: cannot use the TLS certificate .*server\.pem"
        ):
            loop.run(HttpServer(APP, "127.0.0.1", 0, name="test", tls=mismatched).start())
    finally:
        loop.close()


@pytest.mark.parametrize(
    "limits",
    [{"max_connections": 0}, {"header_timeout_s": 0}, {"backlog": 0}, {"max_header_bytes": 10}],
)
def test_bad_limits_are_config_errors(limits: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="HTTP limits"):
        HttpLimits(**limits)


def test_clients_that_vanish_or_send_garbage_leave_the_log_quiet(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = servers.start()
    for _ in range(20):
        with connect(server) as sock:  # a request, then a reset before the answer is read
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.sendall(FULL_REQUEST)
        with connect(server) as sock:
            sock.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
            assert read_until_closed(sock).startswith(b"HTTP/1.1 400 ")
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == []
