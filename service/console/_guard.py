"""What every console response carries, and which requests may change state.

- Security headers on every response (pages, fragments, static files, errors): a strict
  Content-Security-Policy (scripts only from this origin: no inline script, no eval), no
  framing, no content sniffing, no referrer leaving the origin, no caching of pages.
- On a loopback address, a request must name a loopback host (``Host``): a web page whose own
  name an attacker re-points at 127.0.0.1 (DNS rebinding) would otherwise be same-origin with
  the console in the browser's eyes, and without tokens nothing else would stop it.
- A state-changing request (any method but GET and HEAD) must come from this origin: its
  ``Origin`` header, or else its ``Referer``, names this server. SameSite cookies alone do not
  stop a page on another port of the same host (the same "site"). Forms also carry a CSRF token
  (checked in ``app``), which this check does not replace.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
SAFE_METHODS = ("GET", "HEAD")


class ConsoleGuard:
    """ASGI middleware: security headers on every response, cross-origin writes refused."""

    def __init__(self, app: ASGIApp, tls: bool, hosts: frozenset[str] | None = None) -> None:
        self.app = app
        self.scheme = "https" if tls else "http"
        self.hosts = hosts  # the host names requests may name; None: any

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in HEADERS}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                if not scope["path"].startswith("/static/"):
                    kept = [(k, v) for k, v in kept if k.lower() != b"cache-control"]
                    kept.append((b"cache-control", b"no-store"))
                message["headers"] = kept + HEADERS
            await send(message)

        headers = Headers(scope=scope)
        if not self.host_allowed(headers.get("host", "")):
            refused = PlainTextResponse(
                "refused: this console answers only to a loopback host name\n", status_code=403
            )
            await refused(scope, receive, with_headers)
            return
        if scope["method"] not in SAFE_METHODS and not self.same_origin(headers):
            refused = PlainTextResponse(
                "refused: a console form must be sent from the console's own origin\n",
                status_code=403,
            )
            await refused(scope, receive, with_headers)
            return
        await self.app(scope, receive, with_headers)

    def host_allowed(self, host: str) -> bool:
        if self.hosts is None:
            return True
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name.strip("[]").lower() in self.hosts

    def same_origin(self, headers: Headers) -> bool:
        """Whether the request's Origin (else Referer) is this server as the browser reached it
        (scheme, host and port of the Host header). Neither header: refused."""
        host = headers.get("host", "")
        origin = headers.get("origin")
        if origin == "null":  # an opaque origin (sandboxed frame, file page): never ours
            return False
        if origin is None:
            referer = headers.get("referer")
            if referer is None:
                return False
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}"
        return bool(host) and origin == f"{self.scheme}://{host}"
