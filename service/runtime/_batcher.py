"""Dynamic batcher: a bounded queue of requests and one worker thread that runs them in batches.

The worker takes whatever is queued when it becomes free (up to ``max_batch_size`` texts). Under
concurrent load (the previous batch held several requests, or work was still queued behind it) it
waits up to ``max_queue_delay`` after the oldest request for the batch to fill; a lone request
never waits, so batching costs no latency at low load. The session splits a batch into groups of
similar token length.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from service.errors import Overloaded, Unavailable
from service.metrics import Metrics
from service.runtime._session import FloatArray
from service.runtime._slot import ModelSlot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchingOptions:
    max_batch_size: int = 8
    max_queue_delay: float = 0.0
    max_queue_size: int = 256


@dataclass(frozen=True)
class BatchResult:
    """Outputs for one request's texts, from the version its batch ran on."""

    version: int
    labels: list[str]
    probabilities: FloatArray
    embedding: FloatArray
    queue_seconds: float


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future[BatchResult]
    loop: asyncio.AbstractEventLoop
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, slot: ModelSlot, options: BatchingOptions, metrics: Metrics) -> None:
        self._slot = slot
        self._options = options
        self._metrics = metrics
        self._model = slot.model
        self._queue: collections.deque[_Pending] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._under_load = False
        self._thread = threading.Thread(target=self._run, name=f"batcher-{slot.model}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    async def infer(self, texts: list[str]) -> BatchResult:
        loop = asyncio.get_running_loop()
        pending = _Pending(texts, loop.create_future(), loop)
        with self._cond:
            if self._stopping:
                raise Unavailable("server is shutting down")
            if len(self._queue) >= self._options.max_queue_size:
                raise Overloaded(
                    f"model {self._model!r} has {len(self._queue)} requests queued (limit "
                    f"{self._options.max_queue_size}); retry with backoff"
                )
            self._queue.append(pending)
            self._metrics.queue_depth.labels(self._model).set(len(self._queue))
            self._cond.notify()
        return await pending.future

    def stop(self, timeout: float) -> None:
        """Refuse new requests, finish the queued ones, stop the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._execute(batch)

    def _next_batch(self) -> list[_Pending] | None:
        limit = self._options.max_batch_size
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            batch = [self._queue.popleft()]
            count = len(batch[0].texts)
            delay = self._options.max_queue_delay if self._under_load else 0.0
            deadline = batch[0].enqueued + delay
            while count < limit:
                if self._queue:
                    if count + len(self._queue[0].texts) > limit:
                        break
                    item = self._queue.popleft()
                    batch.append(item)
                    count += len(item.texts)
                    continue
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or self._stopping:
                    break
                self._cond.wait(remaining)
            self._under_load = len(batch) > 1 or bool(self._queue)
            self._metrics.queue_depth.labels(self._model).set(len(self._queue))
        return [p for p in batch if not p.future.cancelled()]

    def _execute(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        started = time.perf_counter()
        texts = [t for p in batch for t in p.texts]
        try:
            with self._slot.lease() as version:
                prediction = version.predict(texts)
        except Exception as exc:
            if not isinstance(exc, Unavailable):
                log.exception("batch of %d texts failed on model %s", len(texts), self._model)
            for p in batch:
                p.loop.call_soon_threadsafe(_fail, p.future, exc)
            return
        self._metrics.inference_latency.labels(self._model).observe(time.perf_counter() - started)
        self._metrics.batch_size.labels(self._model).observe(len(texts))
        offset = 0
        for p in batch:
            n = len(p.texts)
            result = BatchResult(
                version=version.version,
                labels=version.labels,
                probabilities=np.ascontiguousarray(prediction.probabilities[offset : offset + n]),
                embedding=np.ascontiguousarray(prediction.embedding[offset : offset + n]),
                queue_seconds=started - p.enqueued,
            )
            offset += n
            p.loop.call_soon_threadsafe(_resolve, p.future, result)


def _resolve(future: asyncio.Future[BatchResult], result: BatchResult) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[BatchResult], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
