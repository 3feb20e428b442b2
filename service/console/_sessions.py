"""Console sessions: kept on the server, named to the browser by a random id only.

A session holds the principal a token authenticated as and the CSRF token of its forms; the
token itself is never kept. The table is bounded: at capacity, the session that expires first
is dropped (its browser has to log in again). A session ends at logout, at its expiry, or when
its token's name leaves the tokens file (checked on every request, see ``app``).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from service.security import Principal

COOKIE = "loopserve_console"
DEFAULT_TTL_S = 8 * 3600.0  # a working day; then the token is asked for again
DEFAULT_CAPACITY = 1024


@dataclass
class Session:
    id: str
    principal: Principal
    csrf: str
    expires: float
    notices: list[str] = field(default_factory=list)  # shown once, on the next page

    def csrf_matches(self, sent: str) -> bool:
        return hmac.compare_digest(self.csrf.encode(), sent.encode("utf-8", "replace"))


class Sessions:
    def __init__(
        self,
        ttl_s: float = DEFAULT_TTL_S,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl_s = ttl_s
        self._capacity = capacity
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, principal: Principal) -> Session:
        session = Session(
            id=secrets.token_urlsafe(32),
            principal=principal,
            csrf=secrets.token_urlsafe(32),
            expires=self._clock() + self.ttl_s,
        )
        with self._lock:
            self._drop_expired()
            while len(self._sessions) >= self._capacity:
                oldest = min(self._sessions.values(), key=lambda s: s.expires)
                del self._sessions[oldest.id]
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires <= self._clock():
                del self._sessions[session_id]
                return None
            return session

    def end(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def _drop_expired(self) -> None:
        now = self._clock()
        for gone in [s.id for s in self._sessions.values() if s.expires <= now]:
            del self._sessions[gone]
