from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from waiting import wait_until_async

from service.errors import DeadlineExceeded, Overloaded, Unavailable
from service.metrics import Metrics
from service.runtime import Batcher, BatchingOptions, ModelSlot, Prediction


class FakeVersion:
    """Stands in for LoadedVersion: records batches, optionally blocks until released."""

    def __init__(self, version: int = 1, gate: threading.Event | None = None) -> None:
        self.version = version
        self.labels = ["a", "b"]
        self.batches: list[list[str]] = []
        self.gate = gate
        self.started = threading.Event()
        self.active = 0

    def predict(self, texts: list[str]) -> Prediction:
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(5)
        self.batches.append(list(texts))
        probs = np.tile(np.array([[0.25, 0.75]], dtype=np.float32), (len(texts), 1))
        emb = np.arange(len(texts), dtype=np.float32).reshape(-1, 1)
        return Prediction(probs, emb)

    def acquire(self) -> None:
        self.active += 1

    def release(self) -> None:
        self.active -= 1

    def wait_idle(self, timeout: float) -> bool:
        return True


def queued(batcher: Batcher) -> int:
    """Requests waiting in the queue: what the worker takes once it is free."""
    return len(batcher._queue)


def make_batcher(version: FakeVersion, **options: float) -> Batcher:
    slot = ModelSlot("m")
    slot.swap(version)
    batcher = Batcher(slot, BatchingOptions(**options), Metrics())
    batcher.start()
    return batcher


def test_results_go_back_to_their_own_request() -> None:
    version = FakeVersion()
    batcher = make_batcher(version, max_batch_size=8)

    async def run() -> None:
        results = await asyncio.gather(*(batcher.infer([f"t{i}"] * (i + 1)) for i in range(3)))
        for i, result in enumerate(results):
            assert result.probabilities.shape == (i + 1, 2)
            assert result.version == 1 and result.labels == ["a", "b"]

    asyncio.run(run())
    batcher.stop(5)


def test_queued_requests_are_batched_up_to_max_batch_size() -> None:
    gate = threading.Event()
    version = FakeVersion(gate=gate)
    batcher = make_batcher(version, max_batch_size=4, max_queue_size=100)

    async def run() -> None:
        first = asyncio.ensure_future(batcher.infer(["blocker"]))
        await asyncio.to_thread(version.started.wait, 5)  # worker is now busy with "blocker"
        rest = [asyncio.ensure_future(batcher.infer([f"t{i}"])) for i in range(10)]
        await wait_until_async(lambda: queued(batcher) == 10)
        gate.set()
        await asyncio.gather(first, *rest)

    asyncio.run(run())
    batcher.stop(5)
    assert version.batches[0] == ["blocker"]
    assert [len(b) for b in version.batches[1:]] == [4, 4, 2]
    assert [t for b in version.batches[1:] for t in b] == [f"t{i}" for i in range(10)]


def test_a_batch_answers_each_request_its_own_rows_with_one_wake_up_of_the_loop() -> None:
    gate = threading.Event()
    version = FakeVersion(gate=gate)
    batcher = make_batcher(version, max_batch_size=8, max_queue_size=100)
    wake_ups: list[object] = []

    async def run() -> list[np.ndarray]:
        loop = asyncio.get_running_loop()
        call_soon_threadsafe = loop.call_soon_threadsafe

        def counted(*args: object, **kwargs: object) -> object:
            if getattr(args[0], "__module__", "") == Batcher.__module__:  # not to_thread's
                wake_ups.append(args[0])
            return call_soon_threadsafe(*args, **kwargs)  # type: ignore[arg-type]

        first = asyncio.ensure_future(batcher.infer(["blocker"]))
        await asyncio.to_thread(version.started.wait, 5)
        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        rest = [asyncio.ensure_future(batcher.infer([f"t{i}"] * (i + 1))) for i in range(3)]
        await wait_until_async(lambda: queued(batcher) == 3)
        gate.set()
        await first
        return [result.embedding[:, 0] for result in await asyncio.gather(*rest)]

    embeddings = asyncio.run(run())
    batcher.stop(5)
    assert version.batches[1] == ["t0", "t1", "t1", "t2", "t2", "t2"]
    # FakeVersion numbers a batch's rows 0..5: each request gets its own, in order.
    assert [e.tolist() for e in embeddings] == [[0.0], [1.0, 2.0], [3.0, 4.0, 5.0]]
    assert len(wake_ups) == 2  # one per batch (the blocker's, then the three requests')


def test_a_request_larger_than_max_batch_runs_alone() -> None:
    version = FakeVersion()
    batcher = make_batcher(version, max_batch_size=2)
    result = asyncio.run(batcher.infer(["x"] * 5))
    batcher.stop(5)
    assert result.probabilities.shape == (5, 2)
    assert version.batches == [["x"] * 5]


def test_under_load_max_queue_delay_waits_for_more_requests() -> None:
    gate = threading.Event()
    version = FakeVersion(gate=gate)
    batcher = make_batcher(version, max_batch_size=8, max_queue_delay=0.2)

    async def run() -> None:
        blocker = asyncio.ensure_future(batcher.infer(["blocker"]))
        await asyncio.to_thread(version.started.wait, 5)
        waiting = [asyncio.ensure_future(batcher.infer([t])) for t in ("q1", "q2")]
        await wait_until_async(lambda: queued(batcher) == 2)
        gate.set()
        await asyncio.gather(blocker, *waiting)  # [q1, q2] was a batch of several: load
        first = asyncio.ensure_future(batcher.infer(["a"]))
        await asyncio.sleep(0)  # "a" is queued...
        await wait_until_async(lambda: queued(batcher) == 0)  # ...and taken: its batch fills
        second = asyncio.ensure_future(batcher.infer(["b"]))
        await asyncio.gather(first, second)

    asyncio.run(run())
    batcher.stop(5)
    assert version.batches == [["blocker"], ["q1", "q2"], ["a", "b"]]


def test_a_lone_request_never_waits_for_the_queue_delay() -> None:
    version = FakeVersion()
    batcher = make_batcher(version, max_batch_size=8, max_queue_delay=0.5)
    started = time.perf_counter()
    asyncio.run(batcher.infer(["alone"]))
    batcher.stop(5)
    assert time.perf_counter() - started < 0.3
    assert version.batches == [["alone"]]


def test_zero_delay_does_not_wait_for_a_full_batch() -> None:
    version = FakeVersion()
    batcher = make_batcher(version, max_batch_size=64, max_queue_delay=0.0)
    started = time.perf_counter()
    asyncio.run(batcher.infer(["alone"]))
    batcher.stop(5)
    assert time.perf_counter() - started < 1.0
    assert version.batches == [["alone"]]


def test_full_queue_is_refused_with_overloaded() -> None:
    gate = threading.Event()
    version = FakeVersion(gate=gate)
    batcher = make_batcher(version, max_batch_size=1, max_queue_size=2)

    async def run() -> None:
        running = asyncio.ensure_future(batcher.infer(["running"]))
        await asyncio.to_thread(version.started.wait, 5)
        waiting = [asyncio.ensure_future(batcher.infer([f"q{i}"])) for i in range(2)]
        await wait_until_async(lambda: queued(batcher) == 2)
        with pytest.raises(Overloaded, match=r"2 requests queued \(limit 2\)"):
            await batcher.infer(["one too many"])
        gate.set()
        await asyncio.gather(running, *waiting)

    asyncio.run(run())
    batcher.stop(5)
    assert len(version.batches) == 3


def test_stop_finishes_queued_work_then_refuses_new() -> None:
    gate = threading.Event()
    version = FakeVersion(gate=gate)
    batcher = make_batcher(version, max_batch_size=1)

    async def run() -> None:
        futures = [asyncio.ensure_future(batcher.infer([f"t{i}"])) for i in range(3)]
        await asyncio.to_thread(version.started.wait, 5)
        stopper = asyncio.ensure_future(asyncio.to_thread(batcher.stop, 5))
        await wait_until_async(lambda: batcher._stopping)
        with pytest.raises(Unavailable, match="shutting down"):
            await batcher.infer(["late"])
        gate.set()
        results = await asyncio.gather(*futures)
        await stopper
        assert len(results) == 3

    asyncio.run(run())


def test_failure_in_a_batch_reaches_every_caller_and_worker_survives() -> None:
    class Exploding(FakeVersion):
        calls = 0

        def predict(self, texts: list[str]) -> Prediction:
            Exploding.calls += 1
            if Exploding.calls == 1:
                raise RuntimeError("boom")
            return super().predict(texts)

    batcher = make_batcher(Exploding(), max_batch_size=4)

    async def run() -> None:
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.infer(["a"])
        assert (await batcher.infer(["b"])).probabilities.shape == (1, 2)

    asyncio.run(run())
    batcher.stop(5)


def test_empty_slot_is_unavailable() -> None:
    batcher = Batcher(ModelSlot("m"), BatchingOptions(), Metrics())
    batcher.start()
    with pytest.raises(Unavailable, match="not loaded"):
        asyncio.run(batcher.infer(["x"]))
    batcher.stop(5)


# --- deadlines ------------------------------------------------------------------------------------


def test_a_request_whose_deadline_passes_in_the_queue_is_not_run() -> None:
    gate = threading.Event()
    version = FakeVersion(gate=gate)
    batcher = make_batcher(version, max_batch_size=4)

    async def run() -> None:
        running = asyncio.ensure_future(batcher.infer(["running"]))
        await asyncio.to_thread(version.started.wait, 5)
        expiring = asyncio.ensure_future(batcher.infer(["expiring"], time.monotonic() + 0.05))
        patient = asyncio.ensure_future(batcher.infer(["patient"], time.monotonic() + 30))
        await asyncio.sleep(0.1)  # past the first deadline while both wait behind "running"
        gate.set()
        with pytest.raises(DeadlineExceeded, match=r"deadline passed after \d+ ms in the queue"):
            await expiring
        assert (await patient).probabilities.shape == (1, 2)
        await running

    asyncio.run(run())
    batcher.stop(5)
    assert version.batches == [["running"], ["patient"]]


def test_an_expired_head_of_the_queue_is_skipped_for_the_next_live_request() -> None:
    gate = threading.Event()
    version = FakeVersion(gate=gate)
    batcher = make_batcher(version, max_batch_size=1)

    async def run() -> None:
        running = asyncio.ensure_future(batcher.infer(["running"]))
        await asyncio.to_thread(version.started.wait, 5)
        expired = [
            asyncio.ensure_future(batcher.infer([f"e{i}"], time.monotonic() + 0.05))
            for i in range(3)
        ]
        live = asyncio.ensure_future(batcher.infer(["live"]))
        await asyncio.sleep(0.1)  # past their deadlines while they wait behind "running"
        gate.set()
        outcomes = await asyncio.gather(*expired, return_exceptions=True)
        assert all(isinstance(o, DeadlineExceeded) for o in outcomes), outcomes
        await asyncio.gather(running, live)

    asyncio.run(run())
    batcher.stop(5)
    assert version.batches == [["running"], ["live"]]


def test_a_request_already_past_its_deadline_is_refused_at_once() -> None:
    version = FakeVersion()
    batcher = make_batcher(version)

    with pytest.raises(DeadlineExceeded, match="deadline passed"):
        asyncio.run(batcher.infer(["late"], time.monotonic() - 1))

    batcher.stop(5)
    assert version.batches == []
