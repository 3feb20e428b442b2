"""Connecting to PostgreSQL: checking and redacting the URL, connection settings, and errors.

Every message that leaves this package names the server by its redacted URL: a password in the
URL (or in a ``password=`` parameter) never reaches a log or a client.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from service.errors import ConfigError, InvalidInput, StorageFull, Unavailable

SCHEMES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT_S = 5
# A dead peer is noticed after idle + interval * count = 25 s at most; tcp_user_timeout bounds
# how long sent data may stay unacknowledged (a trainer publishing into a lost network).
KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 25_000,  # ms
}
# The channel a head move is announced on; the payload is the model's name.
HEAD_CHANNEL = "loopserve_head"


class Target:
    """A checked database URL, its password and its redacted form for messages."""

    def __init__(self, url: str) -> None:
        if not url.startswith(SCHEMES):
            raise ConfigError(
                f"database URL {redact(url)!r} must start with postgresql:// or postgres://"
            )
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            # The parser's message may quote the URL, password included.
            raise ConfigError(
                f"database URL {redact(url)!r} is not a valid PostgreSQL URL"
            ) from None
        ports = str(params.get("port") or "").split(",")
        if not all(port.isdigit() or not port for port in ports):
            raise ConfigError(f"database URL {redact(url)!r} has an invalid port")
        self.url = url
        self.password = str(params.get("password") or "")
        self.redacted = redact(url)

    def connect(self, application_name: str, **settings: Any) -> psycopg.Connection[Any]:
        """A new autocommit connection of its own (not from a pool)."""
        try:
            return psycopg.connect(
                self.url,
                autocommit=True,
                application_name=application_name,
                connect_timeout=CONNECT_TIMEOUT_S,
                **settings,
            )
        except psycopg.Error as exc:
            raise self.error(exc) from None

    def clean(self, message: str) -> str:
        if self.password:
            message = message.replace(self.password, "***")
        return message.replace(self.url, self.redacted)

    def unavailable(self, what: str, exc: BaseException | None = None) -> Unavailable:
        detail = f": {self.clean(str(exc).strip())}" if exc is not None and str(exc) else ""
        return Unavailable(f"PostgreSQL at {self.redacted}: {what}{detail}")

    def error(self, exc: psycopg.Error) -> Exception:
        """The service error for a database error: bad data is the caller's, the rest is ours."""
        if isinstance(exc, psycopg.errors.DiskFull):  # SQLSTATE 53100; the transaction is undone
            return StorageFull(f"the change to the PostgreSQL database at {self.redacted}")
        if isinstance(exc, psycopg.DataError):
            return InvalidInput(f"the database refused a value: {self.clean(str(exc).strip())}")
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return self.unavailable("cannot reach the database or it failed", exc)
        return self.unavailable("unexpected database error", exc)


def redact(url: str) -> str:
    """``url`` with the password, in the authority or as a parameter, replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{hosts}"
    query = "&".join(
        f"{key}=***" if key == "password" else pair
        for pair in parts.query.split("&")
        if pair
        for key in [pair.split("=", 1)[0]]
    )
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))
