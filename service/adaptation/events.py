"""Fan-out of loop events to WatchEvents subscribers; publishable from any thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncGenerator

from service.domain.loop import Event, EventKind

SUBSCRIBER_BUFFER = 1000


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event], str]] = []
        self._lock = threading.Lock()

    def publish(self, kind: EventKind, model: str, message: str, **attributes: object) -> Event:
        event = Event(kind, model, time.time(), message, {k: str(v) for k, v in attributes.items()})
        with self._lock:
            subscribers = list(self._subscribers)
        for loop, queue, wanted in subscribers:
            if wanted in ("", model) and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody listens
                    loop.call_soon_threadsafe(_offer, queue, event)
        return event

    async def subscribe(self, model: str = "") -> AsyncGenerator[Event, None]:
        """Events from now on; a subscriber that falls more than 1000 events behind loses the
        oldest ones rather than slowing the loop down."""
        queue: asyncio.Queue[Event] = asyncio.Queue(SUBSCRIBER_BUFFER)
        entry = (asyncio.get_running_loop(), queue, model)
        with self._lock:
            self._subscribers.append(entry)
        try:
            while True:
                yield await queue.get()
        finally:
            with self._lock:
                self._subscribers.remove(entry)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)


def _offer(queue: asyncio.Queue[Event], event: Event) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(event)
