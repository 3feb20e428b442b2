"""loopserve's HTTP endpoints: Starlette apps served by uvicorn on the server's event loop.

:class:`HttpServer` runs any ASGI app on a host and port under :class:`HttpLimits` (a connection
cap, header, request and keep-alive timeouts) with optional TLS (:class:`service.security.TlsFiles`);
:class:`MetricsServer` is the Prometheus endpoint on it.
"""

from service.web._limits import HttpLimits
from service.web._server import HttpServer
from service.web.metrics import MetricsServer, metrics_app

__all__ = ["HttpLimits", "HttpServer", "MetricsServer", "metrics_app"]
