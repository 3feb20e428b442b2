"""CandidatePool: which recent inputs are worth labeling."""

from __future__ import annotations

import math

import numpy as np

from service.domain.loop import content_key
from service.drift import CandidatePool, Projection
from service.drift._candidates import UNDO_DEPTH


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


def test_an_undone_label_puts_its_input_back_with_its_bytes() -> None:
    pool = CandidatePool(capacity=10)
    image = b"\x89PNG c" + bytes(500)
    add(pool, "t1", ["kept aside"], 0.7, 0.0)
    add_images(pool, "i1", [image], 0.6)
    add_images(pool, "i2", [image], 0.8)  # the same image served again
    size = pool.size_bytes
    pool.forget({"t1", "i2"})
    assert pool.top(10) == [] and pool.size_bytes == 0
    assert pool.restore({"nothing-labeled"}) == 0
    assert pool.restore({"i2"}) == 2  # every time it was served, as forget dropped it
    [candidate] = pool.top(10)
    assert (candidate.prediction_id, candidate.content) == ("i2", image)
    assert pool.restore({"t1"}) == 1 and pool.size_bytes == size
    assert pool.restore({"t1"}) == 0  # back in the pool: nothing aside any more


def test_inputs_kept_aside_for_undo_are_bounded() -> None:
    pool = CandidatePool(capacity=1000, max_bytes=80_000)
    add_images(pool, "big", [b"b" * 20_000], 0.6)  # more than an eighth of the budget
    pool.forget({"big"})
    assert pool.restore({"big"}) == 0
    pool = CandidatePool(capacity=1000)
    for i in range(UNDO_DEPTH + 1):
        add(pool, f"t{i}", [f"text {i}"], 0.9, 0.0)
    pool.forget({f"t{i}" for i in range(UNDO_DEPTH + 1)})
    assert pool.restore({"t0"}) == 0  # the oldest went first
    assert pool.restore({"t1", f"t{UNDO_DEPTH}"}) == 2


def add_images(
    pool: CandidatePool, request_id: str, images: list[bytes], confidence: float
) -> None:
    n = len(images)
    probabilities = np.tile(np.array([[confidence, 1 - confidence]], np.float32), (n, 1))
    embeddings = np.zeros((n, 4), np.float32)
    pool.add(request_id, images, 1, ["yes", "no"], probabilities, embeddings)


def test_images_are_kept_once_by_content_and_given_out_with_their_bytes() -> None:
    pool = CandidatePool(capacity=10)
    a, b = b"\x89PNG a" + bytes(1000), b"\xff\xd8\xff b" + bytes(2000)
    add_images(pool, "r1", [a], 0.6)
    add_images(pool, "r2", [a, b], 0.9)
    size = pool.size_bytes
    add_images(pool, "r3", [a], 0.9)
    assert len(pool) == 4
    assert pool.size_bytes - size < len(a)  # the same image again costs only its entry
    top = pool.top(10)
    assert [(c.content, c.text, c.prediction_id) for c in top] == [(a, "", "r3"), (b, "", "r2/1")]
    assert pool.recent(10) == [a, b]  # newest first, each once
    keys = [content_key(a), content_key(b), "sha256:gone"]
    assert pool.contents(keys) == {keys[0]: a, keys[1]: b}


def test_the_byte_budget_evicts_oldest_first_and_skips_what_never_fits() -> None:
    budget = 10_000
    pool = CandidatePool(capacity=1000, max_bytes=budget)
    for i in range(40):
        add_images(pool, f"r{i}", [bytes([i]) * 1500], 0.9)
        assert pool.size_bytes <= budget
    kept = {c.prediction_id for c in pool.top(100)}
    assert "r39" in kept and "r0" not in kept and 3 <= len(kept) < 10
    add_images(pool, "huge", [b"x" * (budget + 1)], 0.1)
    assert "huge" not in {c.prediction_id for c in pool.top(100)}
    pool.forget(kept)
    assert len(pool) == 0 and pool.size_bytes == 0 and pool.recent(10) == []


def test_candidates_give_out_the_best_images_that_fit_one_answer() -> None:
    pool = CandidatePool(capacity=10)
    add_images(pool, "best", [b"1" * 600], 0.51)
    add_images(pool, "large", [b"2" * 900], 0.55)
    add_images(pool, "small", [b"3" * 300], 0.6)
    add(pool, "text", ["t"], 0.99, 0.0)
    top = pool.top(10, max_content_bytes=1000)
    assert [c.prediction_id for c in top] == ["best", "small", "text"]
    assert [c.prediction_id for c in pool.top(1, max_content_bytes=1000)] == ["best"]
