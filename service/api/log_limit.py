"""How often refused calls are logged: one WARNING per peer per interval, and a cap for all.

A client that retries with a revoked token, or a scanner, would otherwise write a WARNING per
call. Each peer address (without its port: every connection has a new one) gets at most one
line per ``interval``; the next line it gets says how many were left out. The table of peers is
bounded (the least recently warned one is forgotten first), and all peers together get at most
``budget`` lines per interval, so that many addresses (an IPv6 range) cannot flood the log either.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

INTERVAL_S = 60.0
MAX_PEERS = 1024
BUDGET = 100  # lines per interval for all peers together
# "ipv4:10.0.0.1:51234" and "ipv6:[::1]:51234": the port is per connection, not per caller.
_PORT = re.compile(r"^(ipv4:[^:]+|ipv6:\[[^\]]*\]):\d+$")


def peer_address(peer: str) -> str:
    """``peer`` (as grpc names it) without the port; other forms (``unix:...``) unchanged."""
    match = _PORT.match(peer)
    return match.group(1) if match else peer


@dataclass
class _Peer:
    logged: float  # when this peer's last line was written
    left_out: int = 0  # lines it was refused since


class PeerLogLimit:
    """Decides whether a line about a peer is written; thread-safe."""

    def __init__(
        self,
        interval: float = INTERVAL_S,
        max_peers: int = MAX_PEERS,
        budget: int = BUDGET,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._max_peers = max_peers
        self._budget = budget
        self._clock = clock
        self._peers: OrderedDict[str, _Peer] = OrderedDict()
        self._window_start = float("-inf")
        self._window_lines = 0
        self._lock = threading.Lock()

    def admit(self, peer: str) -> int | None:
        """None when the line about ``peer`` is left out; else how many lines about it were
        left out since its last one (to say so in this one)."""
        key = peer_address(peer)
        with self._lock:
            now = self._clock()
            entry = self._peers.get(key)
            if entry is not None and now - entry.logged < self._interval:
                entry.left_out += 1
                return None
            if not self._within_budget(now):
                if entry is not None:
                    entry.left_out += 1
                return None
            left_out = entry.left_out if entry is not None else 0
            self._peers[key] = _Peer(now)
            self._peers.move_to_end(key)
            while len(self._peers) > self._max_peers:
                self._peers.popitem(last=False)
            return left_out

    def _within_budget(self, now: float) -> bool:
        if now - self._window_start >= self._interval:
            self._window_start, self._window_lines = now, 0
        if self._window_lines >= self._budget:
            return False
        self._window_lines += 1
        return True

    def __len__(self) -> int:
        return len(self._peers)
