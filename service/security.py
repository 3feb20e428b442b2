"""Who may call what: bearer tokens, their scopes and the principals they authenticate.

Transport-neutral: ``service.api.auth`` reads the token from gRPC metadata and asks a
:class:`TokenStore`; the metrics endpoint uses :class:`SecretMatcher`. Token values are never
kept (only their SHA-256), logged or put into an error message.

Token lines (``--tokens-file``, one a line; ``LOOPSERVE_TOKENS``, separated by ``;`` or newlines)::

    # name:scopes:token
    labeler-eu:label:7d0f7c2f5b1c4e9a8e57
    labeling-team:label:trusted:9c1e55d0a7b34f2e8d61
    ops:admin:4f5e0f7e1b1d4c6f8a2b9c3d

``admin`` implies ``label``, ``label:trusted`` and ``infer``; ``label:trusted`` implies
``label``; ``label`` does not imply ``infer``. A round of samples that only trusted sources
posted is promoted on the accuracy gate alone, without the review (see
``service.domain.review``).

The tokens file is read again when it changes (:class:`TokenFileWatcher`, every 2 s and on
SIGHUP): a revoked token stops working within seconds, without a restart. A new file that does
not parse leaves the tokens in force as they were, and says why in the log.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from service.errors import ConfigError, PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)

# The caller's name when authentication is off: what the core records as a sample's source and
# in "approved by" (the adapters pass it as ``caller=``, as they pass a token's name otherwise).
ANONYMOUS = "anonymous"

TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MIN_TOKEN_CHARS = 16  # guessing must stay out of reach: `openssl rand -hex 32` gives 64
# Printable ASCII without spaces (a gRPC metadata value) and without ";" (the env separator).
TOKEN_VALUE = re.compile(rf"[\x21-\x3a\x3c-\x7e]{{{MIN_TOKEN_CHARS},4096}}")
METRICS_REALM = 'realm="loopserve metrics"'


class Scope(enum.Enum):
    INFER = "infer"
    LABEL = "label"
    LABEL_TRUSTED = "label:trusted"  # labels whose rounds skip the poisoning review
    ADMIN = "admin"


# What a declared scope grants: an operator token can do everything, a labeling source only label.
IMPLIED: dict[Scope, frozenset[Scope]] = {
    Scope.INFER: frozenset({Scope.INFER}),
    Scope.LABEL: frozenset({Scope.LABEL}),
    Scope.LABEL_TRUSTED: frozenset({Scope.LABEL, Scope.LABEL_TRUSTED}),
    Scope.ADMIN: frozenset(Scope),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the token's name and the scopes it grants (implications applied)."""

    name: str
    scopes: frozenset[Scope]

    def require(self, scope: Scope | None, what: str) -> None:
        """Raise :class:`PermissionDenied` unless this principal has ``scope`` (None: any)."""
        if scope is not None and scope not in self.scopes:
            granted = ", ".join(sorted(s.value for s in self.scopes))
            raise PermissionDenied(
                f"token {self.name!r} (scopes: {granted}) lacks the scope {scope.value!r} "
                f"needed for {what}"
            )


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    digest: bytes


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


class TokenStore:
    """The configured tokens, kept as SHA-256 digests only."""

    def __init__(self, entries: Iterable[_Entry]) -> None:
        self._entries = tuple(entries)
        if not self._entries:
            raise ConfigError("no tokens configured")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.principal.name for e in self._entries)

    def replace_with(self, other: TokenStore) -> None:
        """Take ``other``'s tokens, at once for every caller (one attribute assignment: a call
        checks against the old set or the new one, never a mix)."""
        self._entries = other._entries

    def trusted(self, name: str) -> bool:
        """Whether the token named ``name`` posts trusted labels (scope ``label:trusted``)."""
        return any(
            e.principal.name == name and Scope.LABEL_TRUSTED in e.principal.scopes
            for e in self._entries
        )

    def authenticate(self, token: str) -> Principal:
        """The principal of ``token``; :class:`Unauthenticated` when it is not configured."""
        digest = _digest(token)
        found: Principal | None = None
        # Every entry is compared (no early exit), each in constant time.
        for entry in self._entries:
            if hmac.compare_digest(entry.digest, digest):
                found = entry.principal
        if found is None:
            raise Unauthenticated("the bearer token is not valid on this server")
        return found

    @classmethod
    def load(cls, path: Path | None, inline: str) -> TokenStore | None:
        """Tokens from ``path`` (one a line) and ``inline`` (``;`` or newline separated), or None
        when neither is set. Raises :class:`ConfigError` naming the source and line."""
        if path is None and not inline.strip():
            return None
        entries: list[_Entry] = []
        if path is not None:
            lines = _read_text(path, "tokens file").splitlines()
            entries += parse_token_lines(lines, f"{path}: line")
        if inline.strip():
            lines = inline.replace(";", "\n").splitlines()
            entries += parse_token_lines(lines, "LOOPSERVE_TOKENS: entry")
        _check_unique(entries)
        if not entries:
            raise ConfigError(f"no tokens in {path if path is not None else 'LOOPSERVE_TOKENS'}")
        return cls(entries)


def parse_token_lines(lines: Iterable[str], where: str) -> list[_Entry]:
    """``name:scope[,scope...]:token`` lines; blank lines and ``#`` comments are skipped.

    ``where`` prefixes the number of a bad line in errors (``"tokens.txt: line"``).
    """
    entries = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            entries.append(_parse_token_line(line, f"{where} {number}"))
    return entries


def _parse_token_line(line: str, where: str) -> _Entry:
    # Messages name the entry and the token's name, never any part of the token itself.
    parts = _split_token_line(line)
    if len(parts) != 3:
        raise ConfigError(f"{where}: expected name:scope[,scope...]:token")
    name, scope_list, token = (p.strip() for p in parts)
    if not TOKEN_NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: invalid token name: use letters, digits, '_', '.', '@' or '-' (max 64)"
        )
    scopes = _parse_scopes(scope_list, f"{where} ({name})")
    if not TOKEN_VALUE.fullmatch(token):
        raise ConfigError(
            f"{where} ({name}): the token must be {MIN_TOKEN_CHARS} to 4096 printable ASCII "
            "characters without spaces or ';'"
        )
    granted = frozenset(implied for s in scopes for implied in IMPLIED[s])
    return _Entry(Principal(name, granted), _digest(token))


def _split_token_line(line: str) -> list[str]:
    """name, scopes, token. A scope name may contain ':' (``label:trusted``): the scope list
    is the longest run of known scope names after the name; the token is the rest."""
    parts = line.split(":")
    known = {s.value for s in Scope}
    for joined in range(len(parts) - 2, 0, -1):
        scopes = ":".join(parts[1 : 1 + joined])
        if all(n.strip() in known for n in scopes.split(",")):
            return [parts[0], scopes, ":".join(parts[1 + joined :])]
    return line.split(":", 2)


def _parse_scopes(text: str, where: str) -> frozenset[Scope]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    known = {s.value: s for s in Scope}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ConfigError(
            f"{where}: unknown or missing scope(s) {', '.join(map(repr, unknown))}; "
            f"scopes are {', '.join(known)}"
        )
    return frozenset(known[n] for n in names)


def _check_unique(entries: list[_Entry]) -> None:
    names = [e.principal.name for e in entries]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"token name(s) configured twice: {', '.join(repeated)}")
    if len({e.digest for e in entries}) != len(entries):
        raise ConfigError("the same token is configured under two names")


class SecretMatcher:
    """Accepts any of a few secrets (metrics bearer tokens, ``user:password`` pairs)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._digests = tuple(_digest(s) for s in secrets)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def matches(self, candidate: str) -> bool:
        digest = _digest(candidate)
        return any([hmac.compare_digest(d, digest) for d in self._digests])  # no short circuit


@dataclass(frozen=True)
class MetricsAuth:
    """Who may read ``/metrics``: bearer tokens and HTTP basic ``user:password`` pairs (digests
    only)."""

    bearer: SecretMatcher
    basic: SecretMatcher

    @classmethod
    def load(cls, token_file: Path | None, token: str, basic_auth: str) -> MetricsAuth | None:
        """From ``--metrics-token-file``, ``LOOPSERVE_METRICS_TOKEN`` and
        ``LOOPSERVE_METRICS_BASIC_AUTH`` (``user:password``); None when none is set."""
        tokens = [token.strip()] if token.strip() else []
        if token_file is not None:
            tokens.append(read_secret_file(token_file, "metrics token file"))
        if basic_auth:
            user, sep, password = basic_auth.partition(":")
            if not (user and sep and password):
                raise ConfigError("LOOPSERVE_METRICS_BASIC_AUTH must be user:password")
        if not tokens and not basic_auth:
            return None
        return cls(SecretMatcher(tokens), SecretMatcher([basic_auth] if basic_auth else []))

    def allows(self, header: str | None) -> bool:
        scheme, _, credentials = (header or "").strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and self.bearer:
            return self.bearer.matches(credentials)
        if scheme.lower() == "basic" and self.basic:
            try:
                pair = base64.b64decode(credentials, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return self.basic.matches(pair)
        return False

    def challenges(self) -> list[str]:
        schemes = (["Bearer"] if self.bearer else []) + (["Basic"] if self.basic else [])
        return [f"{scheme} {METRICS_REALM}" for scheme in schemes]


def read_secret_file(path: Path, what: str) -> str:
    """A one-line secret file's content, stripped; :class:`ConfigError` if unreadable or empty."""
    secret = _read_text(path, what).strip()
    if not secret:
        raise ConfigError(f"{what} {path} is empty")
    return secret


def read_pem(path: Path, what: str) -> bytes:
    """A PEM file's bytes for TLS; :class:`ConfigError` naming ``what`` when unreadable."""
    data = _read_bytes(path, what)
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{what} {path} is not a PEM file")
    return data


@dataclass(frozen=True)
class TlsFiles:
    """A server's certificate and key (PEM); with ``client_ca``, clients must present a
    certificate signed by it (mutual TLS). Shared by the gRPC and the HTTP endpoints."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def read(self) -> tuple[bytes, bytes, bytes | None]:
        """The PEM bytes of certificate, key and client CA, read now; :class:`ConfigError`
        names a file that is unusable."""
        cert = read_pem(self.cert, "TLS certificate")
        key = read_pem(self.key, "TLS key")
        client_ca = read_pem(self.client_ca, "TLS client CA") if self.client_ca else None
        return cert, key, client_ca


def _read_text(path: Path, what: str) -> str:
    try:
        return _read_bytes(path, what).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text") from None


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a port private to this machine.

    Only literal loopback addresses and ``localhost`` count: any other name could resolve to a
    reachable interface. An empty host binds every interface.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# (device, inode, size, mtime, ctime): a rename over the file, an edit in place and a change of
# the same size within a coarse mtime tick (ctime moves too) all change it. None: unreadable.
FileSignature = tuple[int, int, int, int, int] | None
RELOAD_POLL_S = 2.0


def _signature(path: Path) -> FileSignature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class TokenFileWatcher:
    """Reloads ``tokens`` from ``path`` (plus the ``inline`` tokens) when the file changes.

    A thread polls the file's signature every ``interval`` seconds (a stat, off the event loop);
    :meth:`reload_soon` (SIGHUP) makes it read the file at once. A file that cannot be read or
    parsed keeps the tokens in force and logs an ERROR once per version of the file.
    """

    def __init__(
        self, tokens: TokenStore, path: Path, inline: str = "", interval: float = RELOAD_POLL_S
    ) -> None:
        self._tokens = tokens
        self._path = path
        self._inline = inline
        self._interval = interval
        self._seen: FileSignature = _signature(path)  # the file the tokens came from
        self._wake = threading.Event()
        self._stopping = False
        self._forced = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="loopserve-tokens", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)

    def reload_soon(self) -> None:
        """Read the file now even if it looks unchanged (safe from a signal handler)."""
        self._forced = True
        self._wake.set()

    def check(self, force: bool = False) -> bool:
        """Reload if the file changed (or ``force``); whether the tokens were replaced."""
        signature = _signature(self._path)
        if signature == self._seen and not force:
            return False
        self._seen = signature
        before = set(self._tokens.names)
        try:
            fresh = TokenStore.load(self._path, self._inline)
        except ConfigError as exc:  # its message names the file and line, never a token
            log.error("tokens not reloaded, the previous ones stay in force: %s", exc)
            return False
        assert fresh is not None  # a path is set
        self._tokens.replace_with(fresh)
        after = set(fresh.names)
        log.info(
            "tokens reloaded from %s: %d in force; added %s; removed %s",
            self._path, len(after), ", ".join(sorted(after - before)) or "none",
            ", ".join(sorted(before - after)) or "none",
        )  # fmt: skip
        return True

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stopping:
                return
            forced, self._forced = self._forced, False
            try:
                self.check(force=forced)
            except Exception:  # the watcher must outlive any surprise; the tokens stay as they are
                log.exception("checking the tokens file %s failed", self._path)
