"""The Prometheus endpoint: ``GET /metrics`` on its own address, optionally behind auth.

prometheus_client's ``start_http_server`` cannot check credentials, so this is a small
``http.server`` on a thread. With credentials configured, a request needs either
``Authorization: Bearer <token>`` or HTTP basic auth with a configured ``user:password``; anything
else is answered 401 with ``WWW-Authenticate`` challenges for the accepted schemes.
"""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from service.security import MetricsAuth

log = logging.getLogger(__name__)


POLL_INTERVAL_S = 0.05


class _Handler(BaseHTTPRequestHandler):
    server: _MetricsHTTPServer

    def do_GET(self) -> None:
        if urlsplit(self.path).path != "/metrics":
            self._reply(404, b"not found: the metrics are at /metrics\n")
            return
        auth = self.server.auth
        if auth is not None and not auth.allows(self.headers.get("Authorization")):
            self._reply(
                401, b"unauthorized\n", [("WWW-Authenticate", c) for c in auth.challenges()]
            )
            return
        body = generate_latest(self.server.registry)
        self._reply(200, body, [("Content-Type", CONTENT_TYPE_LATEST)])

    def _reply(self, code: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(code)
        for name, value in headers or [("Content-Type", "text/plain; charset=utf-8")]:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # Every scrape would otherwise print to stderr; the request line holds no credentials.
        log.debug("%s %s", self.address_string(), format % args)


class _MetricsHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], registry: CollectorRegistry, auth: MetricsAuth | None
    ) -> None:
        self.registry = registry
        self.auth = auth
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class MetricsServer:
    """``/metrics`` of ``registry`` on ``host:port`` (0 picks a port), served from a thread."""

    def __init__(
        self, registry: CollectorRegistry, host: str, port: int, auth: MetricsAuth | None = None
    ) -> None:
        try:
            self._http = _MetricsHTTPServer((host.strip("[]"), port), registry, auth)
        except OSError as exc:
            raise OSError(f"cannot bind metrics port {host}:{port}: {exc.strerror or exc}") from exc
        # shutdown() waits for the loop's next poll: a short interval keeps stopping quick.
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL_S},
            name="metrics-http",
            daemon=True,
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(5)
