"""uvicorn's h11 protocol with the guards it lacks: a deadline for the request headers and one
for the response (the connection cap is the acceptor's, see _accept).

uvicorn arms no timer on a connection until its first response is sent (the keep-alive timer), so
a client that sends ``GET /metrics HTTP/1.1\\r\\n`` and nothing more would hold its connection for
ever; ``limit_concurrency`` only answers 503 once a request is complete. Here every connection
is always under one timer:

- waiting for (the rest of) request headers: ``header_timeout_s`` from the connection's start, or
  from the first byte of a further request on a kept-alive connection (a client that dribbles a
  byte at a time gains nothing);
- idle between requests: uvicorn's keep-alive timer;
- a request being answered: ``request_timeout_s`` until the response is complete (a client that
  stops reading cannot pin the response).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from service.web._limits import HttpLimits

# Why the server closed a connection it had not answered (see GuardedConfig.on_closed).
HEADER_TIMEOUT, RESPONSE_TIMEOUT = "header_timeout", "response_timeout"


class GuardedConfig(Config):
    """uvicorn's settings plus the limits this protocol enforces; ``on_closed(reason)`` is
    called for each connection the server closes unanswered (HEADER_TIMEOUT, RESPONSE_TIMEOUT),
    and ``on_released()`` for each connection that ends, on the event loop."""

    def __init__(
        self,
        app: Any,
        limits: HttpLimits,
        on_closed: Callable[[str], None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, http=GuardedH11Protocol, **kwargs)
        self.limits = limits
        self.on_closed = on_closed or (lambda reason: None)
        self.on_released: Callable[[], None] = lambda: None


class GuardedH11Protocol(H11Protocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        assert isinstance(config, GuardedConfig), "serve through service.web.HttpServer"
        self.limits = config.limits
        self._on_closed = config.on_closed
        self._on_released = config.on_released
        self._header_timer: asyncio.TimerHandle | None = None
        self._request_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        super().connection_made(transport)
        self._header_timer = self._deadline(self.limits.header_timeout_s, HEADER_TIMEOUT)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)
        self._on_released()  # room for the next connection

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None
        super().on_response_complete()  # may start a pipelined request
        self._watch()

    def _watch(self) -> None:
        """Put the connection under the timer of the phase it is in now."""
        if self.transport.is_closing():
            self._cancel_timers()
        elif self.conn.their_state is h11.IDLE:
            # Bytes of a request whose headers are incomplete: the header deadline runs (from
            # its first byte). No bytes: idle, under uvicorn's keep-alive timer.
            if self._header_timer is None and self.conn.trailing_data[0]:
                self._header_timer = self._deadline(self.limits.header_timeout_s, HEADER_TIMEOUT)
        else:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            if self._request_timer is None:
                self._request_timer = self._deadline(
                    self.limits.request_timeout_s, RESPONSE_TIMEOUT
                )

    def _deadline(self, seconds: float, reason: str) -> asyncio.TimerHandle:
        return self.loop.call_later(seconds, self._expire, reason)

    def _expire(self, reason: str) -> None:
        # Nothing is written: a client that stalls is not reading either.
        self._header_timer = self._request_timer = None
        if not self.transport.is_closing():
            self.transport.abort()
            self._on_closed(reason)

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._request_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._request_timer = None
