"""CandidatePool: which recent inputs are worth labeling."""

from __future__ import annotations

import math

import numpy as np

from service.drift import CandidatePool, Projection


def add(
    pool: CandidatePool, request_id: str, texts: list[str], confidence: float, shift: float
) -> None:
    n = len(texts)
    probabilities = np.tile(np.array([[confidence, 1 - confidence]], np.float32), (n, 1))
    embeddings = np.random.default_rng(len(request_id)).normal(size=(n, 4)).astype(np.float32)
    pool.add(request_id, texts, 1, ["yes", "no"], probabilities, embeddings + shift)


def test_low_confidence_and_atypical_inputs_rank_first() -> None:
    pool = CandidatePool(capacity=100)
    reference = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    pool.set_projection(1, Projection.fit(reference, 2))
    add(pool, "sure", [f"s{i}" for i in range(5)], confidence=0.99, shift=0.0)
    add(pool, "unsure", [f"u{i}" for i in range(5)], confidence=0.55, shift=0.0)
    add(pool, "odd", [f"o{i}" for i in range(5)], confidence=0.99, shift=6.0)
    add(pool, "both", ["b"], confidence=0.51, shift=6.0)
    top = pool.top(16)
    assert top[0].text == "b" and top[0].prediction_id == "both"
    score = {c.text: c.score for c in top}
    sure = [score[f"s{i}"] for i in range(5)]
    assert min(score[f"o{i}"] for i in range(5)) > max(sure)
    assert np.mean([score[f"u{i}"] for i in range(5)]) > np.mean(sure)
    assert all(c.atypicality > 5 for c in top if c.text.startswith("o"))
    assert top[0].predicted_label == "yes" and math.isclose(top[0].confidence, 0.51, rel_tol=1e-5)


def test_prediction_ids_follow_the_delayed_label_convention() -> None:
    pool = CandidatePool(capacity=10)
    add(pool, "req", ["a", "b"], 0.9, 0.0)
    add(pool, "one", ["c"], 0.9, 0.0)
    add(pool, "", ["d"], 0.9, 0.0)
    assert sorted(c.prediction_id for c in pool.top(10)) == ["", "one", "req/0", "req/1"]


def test_without_a_projection_confidence_alone_ranks() -> None:
    pool = CandidatePool(capacity=10)
    add(pool, "hi", ["x"], 0.9, 0.0)
    add(pool, "lo", ["y"], 0.6, 0.0)
    top = pool.top(2)
    assert [c.text for c in top] == ["y", "x"]
    assert all(math.isnan(c.atypicality) for c in top)


def test_duplicates_capacity_and_forget() -> None:
    pool = CandidatePool(capacity=3)
    for i in range(5):
        add(pool, f"r{i}", ["same" if i % 2 else f"t{i}"], 0.9, 0.0)
    assert len(pool) == 3
    texts = [c.text for c in pool.top(10)]
    assert sorted(texts) == ["same", "t2", "t4"]  # t0 and the first "same" fell out
    assert [c.prediction_id for c in pool.top(10) if c.text == "same"] == ["r3"]
    pool.forget({"r3"})
    assert sorted(c.text for c in pool.top(10)) == ["t2", "t4"]
    assert pool.top(0) == []
