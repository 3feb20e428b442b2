"""The one place client channels are made: plaintext or TLS (optionally mutual), with a token.

Over TLS the token travels as gRPC call credentials. grpc refuses call credentials on a plaintext
channel, so there an interceptor adds the ``authorization`` metadata to every call instead (for a
server on loopback, or behind a proxy or mesh that terminates TLS).
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from service.errors import ConfigError
from service.security import read_pem


@dataclass(frozen=True)
class ChannelOptions:
    """How a client reaches the server. TLS is on when ``tls`` or any TLS file is given."""

    token: str | None = field(default=None, repr=False)
    tls: bool = False
    ca: Path | None = None  # CA that signed the server's certificate (default: system roots)
    cert: Path | None = None  # client certificate and key, for mutual TLS
    key: Path | None = None
    server_name: str | None = None  # expected name in the server certificate, if not the host

    @property
    def secure(self) -> bool:
        return self.tls or self.ca is not None or self.cert is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> ChannelOptions:
        """``LOOPSERVE_TOKEN``, ``LOOPSERVE_TLS_CA``, ``LOOPSERVE_TLS_CLIENT_CERT``/``_KEY``,
        ``LOOPSERVE_TLS_SERVER_NAME``; ``overrides`` that are not None win."""

        def path(name: str) -> Path | None:
            return Path(environ[name]) if environ.get(name) else None

        values: dict[str, Any] = {
            "token": environ.get("LOOPSERVE_TOKEN") or None,
            "ca": path("LOOPSERVE_TLS_CA"),
            "cert": path("LOOPSERVE_TLS_CLIENT_CERT"),
            "key": path("LOOPSERVE_TLS_CLIENT_KEY"),
            "server_name": environ.get("LOOPSERVE_TLS_SERVER_NAME") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        options = cls(**values)
        options.validate()
        return options

    def validate(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigError(
                "a client certificate needs its key: give both --tls-cert and --tls-key"
            )
        if self.token is not None and not self.token.strip():
            raise ConfigError("the token is empty")


def open_channel(address: str, options: ChannelOptions | None = None) -> grpc.Channel:
    """A channel to ``address`` as ``options`` say (default: plaintext, no token)."""
    options = options or ChannelOptions()
    options.validate()
    channel_options = []
    if options.server_name:
        channel_options.append(("grpc.ssl_target_name_override", options.server_name))
    if options.secure:
        return grpc.secure_channel(address, _credentials(options), channel_options)
    channel = grpc.insecure_channel(address, channel_options)
    if options.token:
        return grpc.intercept_channel(channel, BearerInterceptor(options.token))
    return channel


def _credentials(options: ChannelOptions) -> grpc.ChannelCredentials:
    root = read_pem(options.ca, "TLS CA") if options.ca else None
    cert = read_pem(options.cert, "TLS client certificate") if options.cert else None
    key = read_pem(options.key, "TLS client key") if options.key else None
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root, private_key=key, certificate_chain=cert
    )
    if options.token:
        token = grpc.access_token_call_credentials(options.token)
        credentials = grpc.composite_channel_credentials(credentials, token)
    return credentials


_Details = collections.namedtuple(  # grpc's documented way to copy call details
    "_Details", ["method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"]
)


class _CallDetails(_Details, grpc.ClientCallDetails):
    pass


class BearerInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call of a plaintext channel."""

    def __init__(self, token: str) -> None:
        self._metadata = ("authorization", f"Bearer {token}")

    def __repr__(self) -> str:  # never show the token
        return "BearerInterceptor(<token>)"

    def _details(self, details: Any) -> _CallDetails:
        metadata = [*(details.metadata or ()), self._metadata]
        return _CallDetails(
            details.method, details.timeout, metadata, details.credentials,
            getattr(details, "wait_for_ready", None), getattr(details, "compression", None),
        )  # fmt: skip

    def _intercept(
        self, continuation: Callable[[Any, Any], Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    intercept_unary_unary = _intercept
    intercept_unary_stream = _intercept
    intercept_stream_unary = _intercept
    intercept_stream_stream = _intercept
