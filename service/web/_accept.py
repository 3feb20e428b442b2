"""Accepting connections only while there is room for them.

asyncio's own server accepts every connection the kernel completes, whatever is open already: a
server that then answers each one over its cap still spends a task, a transport and two
callbacks on it (about 0.1 ms of CPU each, measured on 2 cores), so clients that connect and
reconnect fast enough could starve the loop. Here the listening socket is read only while fewer
than ``max_connections`` are open. At the cap, further clients wait in the kernel's accept queue
(``backlog``) and then have their connection attempts dropped, which their TCP stack retries
later: no work at all for this process.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable


class Acceptor:
    def __init__(
        self,
        sock: socket.socket,
        protocol: Callable[[], asyncio.Protocol],
        max_connections: int,
        burst: int,
        open_connections: Callable[[], int],
        tls: ssl.SSLContext | None,
        handshake_timeout_s: float,
    ) -> None:
        self._sock = sock
        self._protocol = protocol
        self._max = max_connections
        self._burst = burst
        self._open = open_connections
        self._tls = tls
        self._handshake_timeout_s = handshake_timeout_s
        self._loop = asyncio.get_running_loop()
        self._setting_up: set[asyncio.Task[None]] = set()  # accepted, no protocol yet (TLS)
        self._reading = False
        self._closed = False

    def start(self) -> None:
        self._sock.setblocking(False)
        self.resume()

    def resume(self) -> None:
        """Read the listening socket again if there is room (after a connection closed)."""
        if not (self._reading or self._closed) and self._room():
            self._loop.add_reader(self._sock.fileno(), self._accept)
            self._reading = True

    def close(self) -> None:
        self._closed = True
        self._pause()
        for task in self._setting_up:
            task.cancel()
        self._sock.close()

    def _room(self) -> bool:
        return self._open() + len(self._setting_up) < self._max

    def _pause(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._sock.fileno())
            self._reading = False

    def _accept(self) -> None:
        # At most a queue's length per readiness, as asyncio's own server does: the loop has
        # other work.
        for _ in range(self._burst):
            if not self._room():
                self._pause()
                return
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError:  # out of file descriptors or memory: try again in a while
                self._pause()
                self._loop.call_later(1.0, self.resume)
                return
            conn.setblocking(False)
            task = self._loop.create_task(self._set_up(conn))
            self._setting_up.add(task)
            task.add_done_callback(self._set_up_done)

    async def _set_up(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(
                self._protocol,
                conn,
                ssl=self._tls,
                ssl_handshake_timeout=self._handshake_timeout_s if self._tls else None,
            )
        except (OSError, TimeoutError):  # a client that left or failed its TLS handshake
            conn.close()
        except asyncio.CancelledError:  # the server stops
            conn.close()
            raise

    def _set_up_done(self, task: asyncio.Task[None]) -> None:
        self._setting_up.discard(task)
        self.resume()
