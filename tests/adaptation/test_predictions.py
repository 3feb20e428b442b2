"""The prediction log: bounded, keyed per text, replaced on a repeated id, forgetful after its
retention window, and of fixed memory whatever ids it has seen."""

from __future__ import annotations

import random
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from service.adaptation.predictions import PredictionLog, PredictionRecord


def test_prediction_log_is_bounded_and_keys_multi_text_requests() -> None:
    log = PredictionLog(capacity=3)
    log.record("r1", "m", 1, ["a"])
    log.record("r2", "m", 2, ["a", "b", "c"])
    assert log.lookup("r1") is None  # evicted: capacity 3
    assert log.lookup("r2/1") == PredictionRecord("m", 2, "b")
    log.record("", "m", 1, ["a"])
    assert len(log) == 3


def test_a_repeated_id_keeps_its_newest_prediction_once() -> None:
    log = PredictionLog(capacity=4)
    log.record("r1", "m", 1, ["a"])
    log.record("r1", "other", 2, ["b"])
    assert log.lookup("r1") == PredictionRecord("other", 2, "b")
    assert len(log) == 1


def test_predictions_older_than_the_retention_window_are_not_found() -> None:
    now = [1000.0]
    log = PredictionLog(capacity=10, retention_seconds=60, clock=lambda: now[0])
    log.record("old", "m", 1, ["a"])
    now[0] += 30
    log.record("new", "m", 1, ["b"])
    now[0] += 40
    assert log.lookup("old") is None
    assert log.lookup("new") == PredictionRecord("m", 1, "b")


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(1, 12),
    ids=st.lists(st.integers(0, 30), max_size=120),
)
def test_the_log_finds_exactly_the_newest_prediction_of_the_last_recordings(
    capacity: int, ids: list[int]
) -> None:
    """Against the plain rule: an id is found while its newest recording is among the last
    ``capacity`` recordings (wrap-around, replacement and index clean-up included)."""
    log = PredictionLog(capacity=capacity)
    for step, request in enumerate(ids):
        log.record(f"id-{request}", "m", step, [f"label-{request % 3}"])
    recent = ids[-capacity:] if ids else []
    newest = {request: step for step, request in enumerate(ids)}
    first_recent_step = len(ids) - len(recent)
    for request in set(ids) | {99}:
        found = log.lookup(f"id-{request}")
        step = newest.get(request, -1)
        if step >= first_recent_step:
            assert found == PredictionRecord("m", step, f"label-{request % 3}")
        else:
            assert found is None
    assert len(log) == len(set(recent))


def test_memory_does_not_grow_with_the_ids_seen() -> None:
    log = PredictionLog(capacity=2_000)
    labels = [f"intent_{i}" for i in range(20)]
    rng = random.Random(0)

    def fill(count: int) -> None:
        for _ in range(count):
            log.record(f"{rng.getrandbits(128):032x}", "m", 1, [rng.choice(labels)])

    fill(2_000)  # full: every label and the model interned
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fill(20_000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1_000, f"the log grew by {grown} bytes over 20,000 new ids"
