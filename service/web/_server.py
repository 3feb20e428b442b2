"""Serve an ASGI app (Starlette) with uvicorn on the caller's running event loop.

The server is the pieces of ``uvicorn.Server.serve`` without its signal handlers (the process
owns SIGTERM), without ``sys.exit`` on a bind error (the socket is bound here, so a taken port is
an ``OSError`` that names the endpoint) and without its listener: connections are accepted by
:class:`~service.web._accept.Acceptor`, which stops accepting at the connection cap. Connections
are asyncio protocols on the loop that calls :meth:`HttpServer.start`: no thread per connection.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import ssl
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from service.errors import ConfigError
from service.security import TlsFiles
from service.web._accept import Acceptor
from service.web._guard import GuardedConfig, GuardedH11Protocol
from service.web._limits import HttpLimits


class HttpServer:
    """``app`` on ``host:port`` (0 picks a free port, see :attr:`port`), under ``limits``."""

    def __init__(
        self,
        app: ASGIApp,
        host: str,
        port: int,
        *,
        name: str,
        limits: HttpLimits | None = None,
        tls: TlsFiles | None = None,
        on_closed: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name  # "metrics", "console": names the endpoint in errors
        self.host = host.strip("[]")
        self.limits = limits or HttpLimits()
        self.tls = tls
        self.on_closed = on_closed  # (reason): a connection closed unanswered, see _guard
        self._app = app
        self._requested_port = port
        self._port: int | None = None
        self._acceptor: Acceptor | None = None
        self._server: uvicorn.Server | None = None
        self._ticker: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (the one picked when 0 was asked)."""
        assert self._port is not None, "start() first"
        return self._port

    @property
    def open_connections(self) -> int:
        return 0 if self._server is None else len(self._server.server_state.connections)

    async def start(self) -> None:
        """Bind and serve. :class:`ConfigError` for unusable TLS files, ``OSError`` for a port
        that cannot be bound."""
        config = self._config()
        sock = _bind(self.host, self._requested_port, self.limits.backlog, self.name)
        self._port = int(sock.getsockname()[1])
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)  # set by Server.serve before startup
        await server.startup(sockets=[])  # no listener of uvicorn's: the acceptor's below
        loop = asyncio.get_running_loop()
        self._acceptor = Acceptor(
            sock,
            lambda: GuardedH11Protocol(config, server.server_state, server.lifespan.state, loop),
            self.limits.max_connections,
            self.limits.backlog,
            lambda: len(server.server_state.connections),
            config.ssl,
            self.limits.header_timeout_s,
        )
        config.on_released = self._acceptor.resume
        self._acceptor.start()
        self._server = server
        # uvicorn's once-a-tick housekeeping (the Date header); it returns when asked to exit.
        self._ticker = asyncio.create_task(server.main_loop(), name=f"{self.name}-http")

    async def stop(self) -> None:
        """Stop accepting, let responses under way finish (``shutdown_grace_s``), close the rest."""
        server, ticker = self._server, self._ticker
        if server is None or ticker is None:
            return
        self._server = self._ticker = None
        if self._acceptor is not None:
            self._acceptor.close()
        server.should_exit = True
        await ticker
        await server.shutdown()
        # A connection still open after the grace time (a client that does not read) is cut.
        for connection in list(server.server_state.connections):
            if connection.transport is not None:
                connection.transport.abort()

    def _config(self) -> GuardedConfig:
        limits, tls = self.limits, self.tls
        tls_options: dict[str, Any] = {}
        if tls is not None:
            # Read (and check) the files first: uvicorn's own errors would not say which is bad.
            tls.read()
            tls_options = {
                "ssl_certfile": tls.cert,
                "ssl_keyfile": tls.key,
                "ssl_ca_certs": tls.client_ca,
                "ssl_cert_reqs": ssl.CERT_REQUIRED if tls.client_ca else ssl.CERT_NONE,
            }
        config = GuardedConfig(
            self._app,
            limits,
            self.on_closed,
            host=self.host,
            port=self._requested_port,
            lifespan="off",
            ws="none",
            log_config=None,  # leave the process's logging as it is
            # uvicorn warns once per malformed request: a line per connection under a flood, at
            # the client's will. Its errors (an app that raised) stay; our own lines say the rest.
            log_level=logging.ERROR,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            backlog=limits.backlog,
            timeout_keep_alive=limits.keep_alive_s,
            timeout_graceful_shutdown=math.ceil(limits.shutdown_grace_s),
            h11_max_incomplete_event_size=limits.max_header_bytes,
            # The acceptor holds connections to the cap; this bounds requests (tasks) the same
            # way should a connection ever run more than one.
            limit_concurrency=limits.max_connections + 1,
            **tls_options,
        )
        try:
            config.load()
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{self.name}: cannot use the TLS certificate {tls.cert if tls else ''} with its "
                f"key: {exc}"
            ) from exc
        return config


def _bind(host: str, port: int, backlog: int, name: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as exc:
        raise OSError(f"cannot bind {name} port {host}:{port}: {exc.strerror or exc}") from exc
