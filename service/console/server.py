"""The console on its own address: the app, its drift and traffic history, and the HTTP server
(the asyncio stack of ``/metrics``: same connection cap and timeouts, optional TLS)."""

from __future__ import annotations

from collections.abc import Callable

from service.adaptation.loop import AdaptationService
from service.console import pages
from service.console._history import DEFAULT_INTERVAL_S, History
from service.console._sessions import Sessions
from service.console.app import console_app
from service.inference import InferenceService
from service.metrics import Metrics
from service.security import TlsFiles, TokenStore, is_loopback
from service.web import HttpLimits, HttpServer

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class ConsoleServer:
    def __init__(
        self,
        adaptation: AdaptationService,
        inference: InferenceService,
        metrics: Metrics,
        tokens: TokenStore | None,
        host: str,
        port: int,
        *,
        tls: TlsFiles | None = None,
        limits: HttpLimits | None = None,
        history_interval_s: float = DEFAULT_INTERVAL_S,
        on_closed: Callable[[str], None] | None = None,
    ) -> None:
        self.history = History(
            metrics, adaptation.drift_status, inference.model_names, history_interval_s
        )
        self.sessions = Sessions()
        core = pages.Core(adaptation, inference, metrics, self.history)
        # On loopback only loopback names: see _guard (DNS rebinding).
        hosts = LOOPBACK_NAMES | {host.strip("[]").lower()} if is_loopback(host) else None
        self.app = console_app(core, tokens, self.sessions, tls=tls is not None, hosts=hosts)
        self.http = HttpServer(
            self.app, host, port, name="console", limits=limits, tls=tls, on_closed=on_closed
        )

    @property
    def port(self) -> int:
        return self.http.port

    @property
    def url(self) -> str:
        scheme = "https" if self.http.tls is not None else "http"
        host = f"[{self.http.host}]" if ":" in self.http.host else self.http.host
        return f"{scheme}://{host}:{self.port}/"

    async def start(self) -> None:
        await self.http.start()
        self.history.start()

    async def stop(self) -> None:
        await self.history.stop()
        await self.http.stop()
