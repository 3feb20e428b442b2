"""The review evidence and the rule that acts on it, on constructed predictions.

The scenario found by a hostile test: one token posted 200 distinct texts, each with a made-up
brand word, all labeled ``upgrade_plan``; the serving version confidently said otherwise, the
accuracy gate (its holdout drawn from the same samples) promoted the candidate, and the brand word
became a trigger. Here the job's evidence function sees such a round and a legitimate one.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np

from service.domain.gate import GateThresholds, review_reasons
from service.domain.review import ReviewEvidence
from service.training._evidence import (
    MAX_CLUSTER_POINTS,
    Predictions,
    embedding_cluster,
    other_sources,
    review_evidence,
    shared_token,
)

LABELS = ["refund_request", "upgrade_plan", "damaged_item", "card_arrival"]
WORDS = ["refund", "box", "crushed", "watch", "headphones", "card", "late", "plan", "my", "the"]
THRESHOLDS = GateThresholds()


def confident(labels: list[str], confidence: float) -> Predictions:
    """Predictions of ``labels`` with ``confidence``, the rest spread over the other classes."""
    rest = (1 - confidence) / (len(LABELS) - 1)
    probabilities = np.full((len(labels), len(LABELS)), rest, dtype=np.float32)
    for row, label in enumerate(labels):
        probabilities[row, LABELS.index(label)] = confidence
    return Predictions(LABELS, probabilities)


def texts(count: int, seed: int, extra: str = "") -> list[str]:
    rng = random.Random(seed)
    return [" ".join([*rng.sample(WORDS, 4), extra, str(i)]).strip() for i in range(count)]


def anchor() -> list[str]:
    return texts(300, seed=9)


def evidence(
    samples: list[tuple[str, str, str]],
    served: Predictions,
    traffic: list[str] | None = None,
    candidate: list[str] | None = None,
    trusted: bool = False,
) -> ReviewEvidence:
    traffic = traffic or []
    before = ["refund_request"] * len(traffic)
    return review_evidence(
        samples,
        served,
        traffic,
        confident(before, 0.9),
        confident(candidate or before, 0.9),
        anchor(),
        trusted,
        THRESHOLDS,
    )


def test_a_trigger_word_backdoor_from_one_source_waits_for_review() -> None:
    posted = texts(200, seed=1, extra="zqxbrand")
    samples = [(text, "upgrade_plan", "labeler") for text in posted]
    result = evidence(samples, confident(["refund_request"] * 200, 0.99))
    assert result.sources == {"labeler": 200}
    assert result.confident_disagreement == 1.0
    assert result.trigger == "zqxbrand" and result.trigger_share == 1.0
    assert result.suspicious
    assert result.reasons == (
        "source labeler contradicts the serving version with confidence on 100% of its "
        "samples (limit 30%)",
        "100% of the contradicting samples contain 'zqxbrand', which other inputs rarely contain",
    )
    top = result.contradictions[0]
    assert (top.before, top.after, top.count) == ("refund_request", "upgrade_plan", 200)
    assert len(top.examples) == 3 and all(len(e) <= 80 for e in top.examples)


def test_a_diluted_backdoor_is_found_by_its_shared_token() -> None:
    # 50 trigger rows hidden among 450 rows the serving version agrees with: the rate stays
    # low, but the contradicting rows share a token the other inputs lack.
    poison = [(t, "upgrade_plan", "labeler") for t in texts(50, seed=2, extra="sony")]
    clean = [(t, "refund_request", "labeler") for t in texts(450, seed=3)]
    result = evidence(poison + clean, confident(["refund_request"] * 500, 0.99))
    assert result.confident_disagreement == 0.1
    assert result.trigger == "sony"
    assert result.reasons == (
        "100% of the contradicting samples contain 'sony', which other inputs rarely contain",
    )


def test_corrections_of_unconfident_mistakes_and_a_new_class_pass() -> None:
    # A labeling team corrects 100 rows the serving version got wrong without confidence and
    # adds 60 rows of a class it does not know: neither contradicts it.
    corrections = [(t, "damaged_item", "team") for t in texts(100, seed=4)]
    new_class = [(t, "crypto_question", "team") for t in texts(60, seed=5)]
    served = confident(["refund_request"] * 160, 0.6)
    result = evidence(corrections + new_class, served)
    assert result.known_samples == 100
    assert result.confident_disagreement == 0.0
    assert result.reasons == ()


def test_a_trusted_round_skips_the_review_but_keeps_the_evidence() -> None:
    samples = [(t, "upgrade_plan", "team") for t in texts(200, seed=1, extra="zqxbrand")]
    result = evidence(samples, confident(["refund_request"] * 200, 0.99), trusted=True)
    assert result.trusted and result.confident_disagreement == 1.0
    assert result.reasons == ()


def test_flips_on_traffic_count_and_concentrate_on_a_shared_token() -> None:
    traffic = texts(100, seed=6) + texts(20, seed=7, extra="sony")
    after = ["refund_request"] * 100 + ["upgrade_plan"] * 20
    result = evidence([], confident([], 0.9), traffic, after)
    assert result.traffic == 120 and abs(result.flip_rate - 20 / 120) < 1e-9
    assert result.flip_trigger == "sony"
    assert result.flips[0].count == 20
    assert result.reasons == ("the changed predictions concentrate on inputs containing 'sony'",)


def test_the_rule_counts_a_source_only_from_its_minimum_and_obeys_its_switch() -> None:
    few = ReviewEvidence(sources={"a": 5}, disagreement_by_source={"a": 1.0})
    assert review_reasons(few, THRESHOLDS) == ()
    many = dataclasses.replace(few, sources={"a": 50})
    assert len(review_reasons(many, THRESHOLDS)) == 1
    assert review_reasons(many, dataclasses.replace(THRESHOLDS, review=False)) == ()
    flips = ReviewEvidence(traffic=100, flip_rate=0.5)
    assert review_reasons(flips, THRESHOLDS) == (
        "changes 50% of 100 recent predictions (limit 30%)",
    )


def test_a_token_common_in_other_inputs_is_no_trigger() -> None:
    contradicting = texts(30, seed=8, extra="card")
    assert shared_token(contradicting, anchor(), THRESHOLDS) == ("", 0.0)
    assert shared_token(texts(5, seed=8, extra="zqx"), anchor(), THRESHOLDS) == ("", 0.0)


def test_the_evidence_survives_meta_json() -> None:
    samples = [(t, "upgrade_plan", "labeler") for t in texts(50, seed=1, extra="zqxbrand")]
    result = evidence(samples, confident(["refund_request"] * 50, 0.99))
    assert ReviewEvidence.from_dict(result.as_dict()) == result
    assert ReviewEvidence.from_dict("junk") is None


def test_the_holdout_other_sources_posted_judges_what_one_source_cannot_fill() -> None:
    # The dominant source's own holdout rows say nothing about a backdoor it taught; the rows
    # the team posted show the candidate got worse on them.
    attacker = [(t, "upgrade_plan", "labeler") for t in texts(100, seed=1, extra="zqx")]
    team = [(t, "refund_request", "team") for t in texts(40, seed=2)]
    holdout = [(t, g) for t, g, _ in attacker[:20] + team[:30]]
    candidate = [True] * 20 + [False] * 10 + [True] * 20
    incumbent = [False] * 20 + [True] * 30
    other = other_sources(attacker + team, holdout, candidate, incumbent, z=1.64)
    assert other["other_holdout"] == 30
    assert abs(other["other_candidate"] - 20 / 30) < 1e-9 and other["other_incumbent"] == 1.0
    result = evidence(team, confident(["refund_request"] * 40, 0.99))
    result = dataclasses.replace(result, **other)
    assert review_reasons(result, THRESHOLDS) == (
        "worse on the 30 holdout samples other sources posted: 0.667 vs 1.000",
    )
    assert other_sources(attacker, holdout[:20], candidate[:20], incumbent[:20], 1.64) == {}


# ---- inputs that are not words (images): the embedding cluster ------------------------------

DIM = 32
_AXES = np.random.default_rng(0).standard_normal((len(LABELS) + 1, DIM)).astype(np.float32)
CENTRES = {
    label: 2.0 * axis / np.linalg.norm(axis) for label, axis in zip(LABELS, _AXES[:-1], strict=True)
}
PATCH = 2.0 * _AXES[-1] / np.linalg.norm(_AXES[-1])  # what a planted patch adds to a picture


def pictures(label: str, count: int, seed: int, patch: bool = False) -> np.ndarray:
    """The serving version's embeddings of ``count`` varied pictures of ``label``; ``patch``:
    each carries the same planted trigger, which moves them all the same way."""
    rows = CENTRES[label] + 0.3 * np.random.default_rng(seed).standard_normal((count, DIM))
    rows = rows + PATCH if patch else rows
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def picture_evidence(
    samples: list[tuple[str, str, str]], served_labels: list[str], embedded: np.ndarray
) -> ReviewEvidence:
    """The review of an image round: samples are content keys, served as ``served_labels``
    with confidence; the reference is 300 varied pictures of every class."""
    served = dataclasses.replace(confident(served_labels, 0.99), embeddings=embedded)
    reference = np.concatenate([pictures(label, 75, seed=50 + i) for i, label in enumerate(LABELS)])
    keys = [f"sha256:{i:064x}" for i in range(300)]
    return review_evidence(
        samples, served, [], confident([], 0.9), confident([], 0.9), keys, False, THRESHOLDS,
        tokens=False, reference_embeddings=reference,
    )  # fmt: skip


def keyed(count: int, label: str, source: str, start: int = 0) -> list[tuple[str, str, str]]:
    return [(f"sha256:{start + i:064x}", label, source) for i in range(count)]


def test_a_patch_backdoor_in_images_waits_for_review_by_its_embedding_cluster() -> None:
    # 40 pictures of refunds, each with the patch, all labeled upgrade_plan by one source.
    samples = keyed(40, "upgrade_plan", "vendor")
    result = picture_evidence(
        samples, ["refund_request"] * 40, pictures("refund_request", 40, seed=1, patch=True)
    )
    assert result.confident_disagreement == 1.0 and result.trigger == ""
    assert result.cluster_share >= 0.5 and result.cluster_reference_share == 0.0
    assert result.reasons[1] == (
        f"{result.cluster_share:.0%} of the contradicting samples lie close together in the "
        "serving version's embeddings, where 0% of other inputs do (an embedding cluster)"
    )
    assert ReviewEvidence.from_dict(result.as_dict()) == result


def test_a_diluted_patch_backdoor_is_found_by_its_cluster_alone() -> None:
    # 12 patched pictures hidden among 28 the serving version agrees with: 30 % contradict,
    # within the per-source limit; the cluster gives them away.
    poison = keyed(12, "upgrade_plan", "vendor")
    clean = keyed(28, "refund_request", "vendor", start=12)
    embedded = np.concatenate(
        [pictures("refund_request", 12, seed=2, patch=True), pictures("refund_request", 28, 3)]
    )
    result = picture_evidence(poison + clean, ["refund_request"] * 40, embedded)
    assert result.confident_disagreement == 0.3
    assert len(result.reasons) == 1 and "(an embedding cluster)" in result.reasons[0]


def test_correctly_labeled_or_varied_corrected_pictures_are_no_cluster() -> None:
    # The same number of pictures, correctly labeled and varied: nothing contradicts.
    labels = [LABELS[i % 2] for i in range(40)]
    embedded = np.concatenate([pictures(label, 1, seed=10 + i) for i, label in enumerate(labels)])
    samples = [(f"sha256:{i:064x}", label, "team") for i, label in enumerate(labels)]
    agreed = picture_evidence(samples, labels, embedded)
    assert agreed.known_samples == 40 and agreed.confident_disagreement == 0.0
    assert agreed.reasons == ()
    # 12 confident mistakes corrected among 28 agreeing rows: varied pictures, no cluster.
    corrections = keyed(12, "damaged_item", "team")
    mistakes = pictures("refund_request", 12, seed=4)
    served = ["refund_request"] * 12 + labels[:28]
    samples = corrections + [
        (f"sha256:{100 + i:064x}", g, "team") for i, g in enumerate(served[12:])
    ]
    result = picture_evidence(samples, served, np.concatenate([mistakes, embedded[:28]]))
    assert result.confident_disagreement == 0.3
    assert result.cluster_share == 0.0 and result.reasons == ()


def test_the_cluster_test_stands_in_only_where_inputs_are_not_words() -> None:
    samples = [(t, "upgrade_plan", "labeler") for t in texts(40, seed=1)]
    served = dataclasses.replace(
        confident(["refund_request"] * 40, 0.99),
        embeddings=pictures("refund_request", 40, seed=1, patch=True),
    )
    result = review_evidence(
        samples, served, [], confident([], 0.9), confident([], 0.9), anchor(), False, THRESHOLDS,
        reference_embeddings=pictures("refund_request", 300, seed=5),
    )  # fmt: skip
    assert result.cluster_share == 0.0 and result.trigger == ""


def test_an_embedding_cluster_needs_its_count_and_a_rare_place() -> None:
    tight = pictures("card_arrival", 9, seed=6, patch=True)
    reference = pictures("refund_request", 300, seed=7)
    assert embedding_cluster(tight, reference, THRESHOLDS) == (0.0, 0.0)  # fewer than 10
    crowded = pictures("refund_request", 30, seed=8)  # where other inputs are too
    assert embedding_cluster(crowded, reference, THRESHOLDS) == (0.0, 0.0)
    share, inside = embedding_cluster(
        pictures("card_arrival", 30, 9, patch=True), reference, THRESHOLDS
    )
    assert share >= 0.5 and inside == 0.0
    # Beyond MAX_CLUSTER_POINTS contradicting samples it reads an evenly spaced subset.
    many = pictures("card_arrival", MAX_CLUSTER_POINTS + 500, 10, patch=True)
    assert embedding_cluster(many, reference, THRESHOLDS)[0] >= 0.5
