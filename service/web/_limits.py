"""What an HTTP endpoint of loopserve accepts: its connection cap, timeouts and sizes."""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import ConfigError


@dataclass(frozen=True)
class HttpLimits:
    """Bounds that keep slow, idle or numerous clients from holding the server's resources.

    Every open connection is under one deadline at a time: its request headers, its response, or
    the keep-alive idle time. At ``max_connections`` open the server stops accepting: further
    clients wait in the kernel's accept queue (``backlog``, also the most accepted at once), and
    beyond it the kernel drops their connection attempts, which their TCP stack retries.
    """

    max_connections: int = 64
    header_timeout_s: float = 5.0  # to send complete request headers
    request_timeout_s: float = 30.0  # from complete headers until the response is sent
    keep_alive_s: int = 5  # idle between two requests on one connection
    max_header_bytes: int = 16 * 1024  # request line and headers; larger ones are answered 400
    backlog: int = 16
    shutdown_grace_s: float = 5.0  # for responses under way when the server stops

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.backlog < 1 or self.max_header_bytes < 1024:
            raise ConfigError(
                "HTTP limits: max_connections and backlog must be at least 1 and "
                "max_header_bytes at least 1024"
            )
        timeouts = (self.header_timeout_s, self.request_timeout_s, self.keep_alive_s)
        if min(timeouts) <= 0 or self.shutdown_grace_s < 0:
            raise ConfigError("HTTP limits: timeouts must be positive")
