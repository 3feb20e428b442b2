"""The web console: overview, labeling queue, versions, drift, sources and jobs in a browser.

A Starlette app (``app``) over the same core services as the gRPC API, with the same scopes;
page data in ``pages``; served by :class:`ConsoleServer` on its own address. Security (token
login, cookie sessions, CSRF, same-origin writes, CSP) is described in README "Console".
"""

from service.console.app import console_app
from service.console.pages import Core
from service.console.server import ConsoleServer

__all__ = ["ConsoleServer", "Core", "console_app"]
