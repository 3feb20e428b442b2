"""An asyncio event loop on a background thread, for tests that drive async servers from plain
(blocking) test code: start an HTTP server on it, call it with urllib or sockets."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Server(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextmanager
def serving(server: Server) -> Iterator[LoopThread]:
    """``server`` started on a loop thread; stopped (and the loop closed) on exit."""
    loop = LoopThread()
    try:
        loop.run(server.start())
        yield loop
        loop.run(server.stop())
    finally:
        loop.close()
