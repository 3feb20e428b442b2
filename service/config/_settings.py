"""Process-level settings: flags over ``LOOPSERVE_*`` environment variables over defaults."""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.config._models import validate_model_name
from service.config._tables import check as _check
from service.config._tables import field_type, parse_env
from service.errors import ConfigError
from service.security import MetricsAuth, TokenStore, is_loopback

ROLES = ("all", "serving", "trainer")


@dataclass(frozen=True)
class ServerSettings:
    """Process-level settings: flags override ``LOOPSERVE_*`` environment variables and defaults.

    Secrets (``tokens``, ``metrics_token``, ``metrics_basic_auth``) come from the environment only
    (command lines are visible to every user of the machine) and stay out of ``repr``.
    """

    models: tuple[str, ...] = ("support-intents",)
    models_dir: Path = Path("models")
    state_dir: Path = Path(".loopserve")
    # Loopback unless told otherwise: a reachable port without tokens would let anyone post labels,
    # fine-tune and roll back models.
    host: str = "127.0.0.1"
    grpc_port: int = 8001
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9090
    # The web console (README "Console"): loopback unless told otherwise, under the same bind
    # rule as gRPC; ``console`` false turns it off (--no-console).
    console: bool = True
    console_host: str = "127.0.0.1"
    console_port: int = 8080
    drain_seconds: float = 10.0
    log_level: str = "INFO"
    insecure: bool = False  # allow a non-loopback gRPC bind without tokens
    tokens_file: Path | None = None
    tokens: str = field(default="", repr=False)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    metrics_token_file: Path | None = None
    metrics_token: str = field(default="", repr=False)
    metrics_basic_auth: str = field(default="", repr=False)
    # A plaintext port with grpc.health.v1 only (None: off), for probes that cannot speak TLS.
    health_port: int | None = None
    # Scale-out (README "Scale-out"): ``all`` serves and trains in one process (the default);
    # ``serving`` replicas answer calls and store samples; the one ``trainer`` runs jobs.
    role: str = "all"
    # PostgreSQL (``postgresql://...``) shared by replicas and the trainer; empty: the embedded
    # SQLite file in the state dir. Environment only: it can hold a password.
    database_url: str = field(default="", repr=False)
    # This process's own scratch space (drift state, job directories); default: the state dir.
    # Replicas that share a state dir on a network volume each need their own.
    work_dir: Path | None = None
    # How often a replica checks the head row and a trainer looks for work and for the lock.
    poll_seconds: float = 2.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> ServerSettings:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f"LOOPSERVE_{f.name.upper()}")
            if raw is not None:
                values[f.name] = cls._env_value(f.name, raw, field_type(cls, f.name))
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    @staticmethod
    def _env_value(name: str, raw: str, expected: Any) -> Any:
        if expected is bool:
            word = raw.strip().lower()
            if word not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
                raise ConfigError(f"LOOPSERVE_{name.upper()}={raw!r}: expected 1 or 0")
            return word in ("1", "true", "yes", "on")
        if type(None) in typing.get_args(expected):  # optional: empty means unset
            (inner,) = (t for t in typing.get_args(expected) if t is not type(None))
            return parse_env(name, raw, inner) if raw.strip() else None
        return parse_env(name, raw, expected)

    def validate(self) -> None:
        for port_name in ("grpc_port", "metrics_port", "health_port", "console_port"):
            port = getattr(self, port_name)
            _check(
                port is None or 0 <= port <= 65535, "settings", f"{port_name} must be in [0, 65535]"
            )
        _check(self.drain_seconds >= 0, "settings", "drain_seconds must be >= 0")
        _check(
            self.role in ROLES,
            "settings",
            f"role must be one of {', '.join(ROLES)}, got {self.role!r}",
        )
        _check(
            self.role == "all" or bool(self.database_url),
            "settings",
            f"--role {self.role} shares state through PostgreSQL: set LOOPSERVE_DATABASE_URL",
        )
        _check(
            not self.database_url or self.database_url.startswith(("postgresql://", "postgres://")),
            "settings",
            "LOOPSERVE_DATABASE_URL must be a postgresql:// URL",
        )
        _check(0 < self.poll_seconds <= 60, "settings", "poll_seconds must be in (0, 60]")
        _check(bool(self.models), "settings", "at least one --model is needed")
        for name in self.models:
            validate_model_name(name)
        _check(
            (self.tls_cert is None) == (self.tls_key is None),
            "settings",
            "--tls-cert and --tls-key go together (LOOPSERVE_TLS_CERT, LOOPSERVE_TLS_KEY)",
        )
        _check(
            self.tls_client_ca is None or self.tls_cert is not None,
            "settings",
            "--tls-client-ca (mutual TLS) needs the server's own --tls-cert and --tls-key",
        )
        self.metrics_auth()  # a malformed secret fails here, at start
        self._check_exposure(self.token_store() is not None)

    def _check_exposure(self, has_tokens: bool) -> None:
        if has_tokens or self.insecure:
            return
        if self.console and not is_loopback(self.console_host):
            raise ConfigError(
                f"refusing to serve the console on {self.console_host or 'every interface'} "
                "without tokens: anyone who can reach it could label, roll back and purge. "
                "Configure tokens, bind a loopback address (--console-host 127.0.0.1), turn it "
                "off (--no-console), or pass --insecure"
            )
        if is_loopback(self.host):
            return
        raise ConfigError(
            f"refusing to serve gRPC on {self.host or 'every interface'} without tokens: anyone "
            "who can reach the port could post labels, start fine-tunes and roll back models. "
            "Configure tokens (--tokens-file or LOOPSERVE_TOKENS), bind a loopback address "
            "(--host 127.0.0.1), or pass --insecure (LOOPSERVE_INSECURE=1) to serve without "
            "authentication anyway"
        )

    @property
    def local_dir(self) -> Path:
        """This process's own scratch space: ``work_dir``, else the state dir."""
        return self.work_dir if self.work_dir is not None else self.state_dir

    def token_store(self) -> TokenStore | None:
        """The gRPC tokens (read now), or None when none are configured (auth off)."""
        return TokenStore.load(self.tokens_file, self.tokens)

    def metrics_auth(self) -> MetricsAuth | None:
        """Credentials for ``/metrics`` (read now), or None when it is open."""
        return MetricsAuth.load(
            self.metrics_token_file, self.metrics_token, self.metrics_basic_auth
        )

    def exposure_warnings(self, has_tokens: bool, has_metrics_auth: bool) -> list[str]:
        """What an operator should know about how exposed this configuration is."""
        warnings = []
        if not is_loopback(self.host):
            if not has_tokens:
                warnings.append(
                    f"gRPC on {self.host} accepts calls without authentication (--insecure)"
                )
            elif self.tls_cert is None:
                warnings.append(
                    f"gRPC on {self.host} without TLS: bearer tokens cross the network in "
                    "plaintext unless a proxy or mesh encrypts it (--tls-cert, --tls-key)"
                )
        if self.console and not is_loopback(self.console_host) and self.tls_cert is None:
            warnings.append(
                f"console on {self.console_host} without TLS: tokens and session cookies cross "
                "the network in plaintext unless a proxy encrypts it (--tls-cert, --tls-key)"
            )
        if not is_loopback(self.metrics_host) and not has_metrics_auth:
            warnings.append(
                f"metrics on {self.metrics_host} need no credentials (--metrics-token-file, "
                "LOOPSERVE_METRICS_TOKEN or LOOPSERVE_METRICS_BASIC_AUTH)"
            )
        return warnings
