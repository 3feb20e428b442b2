"""The Prometheus endpoint: ``GET /metrics`` on its own address, optionally behind auth.

With credentials configured, a request needs either ``Authorization: Bearer <token>`` or HTTP
basic auth with a configured ``user:password``; anything else is answered 401 with
``WWW-Authenticate`` challenges for the accepted schemes. Other paths are 404.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from service.security import MetricsAuth, TlsFiles
from service.web._limits import HttpLimits
from service.web._server import HttpServer

PATH = "/metrics"
# A scrape cut by a stop is retried at the next interval: the stop does not wait long for it.
LIMITS = HttpLimits(shutdown_grace_s=1.0)


def metrics_app(render: Callable[[], Awaitable[bytes]], auth: MetricsAuth | None) -> Starlette:
    """A Starlette app answering ``GET /metrics`` with what ``render`` returns."""

    async def scrape(request: Request) -> Response:
        if auth is not None and not auth.allows(request.headers.get("authorization")):
            refused = PlainTextResponse("unauthorized\n", status_code=401)
            for challenge in auth.challenges():
                refused.headers.append("WWW-Authenticate", challenge)
            return refused
        return Response(await render(), media_type=CONTENT_TYPE_LATEST)

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"not found: the metrics are at {PATH}\n", status_code=404)

    return Starlette(
        routes=[Route(PATH, scrape, methods=["GET"])],
        exception_handlers={404: not_found},
    )


class MetricsServer:
    """``/metrics`` of ``registry`` on ``host:port`` (0 picks a port), served on the event loop
    that calls :meth:`start`."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        auth: MetricsAuth | None = None,
        *,
        limits: HttpLimits | None = None,
        tls: TlsFiles | None = None,
        on_closed: Callable[[str], None] | None = None,
    ) -> None:
        self.registry = registry
        # Collecting walks every metric under its locks: off the event loop, one scrape at a
        # time, on one thread whatever the number of scrapers.
        self._renderer = ThreadPoolExecutor(1, thread_name_prefix="metrics-render")
        self.http = HttpServer(
            metrics_app(self._render, auth),
            host,
            port,
            name="metrics",
            limits=limits or LIMITS,
            tls=tls,
            on_closed=on_closed,
        )

    @property
    def port(self) -> int:
        return self.http.port

    async def start(self) -> None:
        await self.http.start()

    async def stop(self) -> None:
        await self.http.stop()
        self._renderer.shutdown(wait=False, cancel_futures=True)

    async def _render(self) -> bytes:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._renderer, generate_latest, self.registry)
