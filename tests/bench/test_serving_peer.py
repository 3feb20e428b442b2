"""The serving benchmark's peer figures: loopserve ÷ peer ratios and the answer check."""

from __future__ import annotations

import math

import pytest

from bench.serving import (
    PeerResult,
    Phase,
    VariantResult,
    agreement,
    at_concurrency,
    peer_ratios,
)


def phase(name: str, p50: float, p99: float, texts_per_s: float) -> Phase:
    return Phase(name, 100, 100, 1.0, p50, p99, p50, texts_per_s, 1.0)


LOOPSERVE = [phase("server c=1", 5.0, 20.0, 190.0), phase("server c=16", 80.0, 160.0, 300.0)]
PEER = [phase("mlserver c=1", 10.0, 16.0, 95.0), phase("mlserver c=16", 90.0, 200.0, 200.0)]


def test_ratios_are_loopserve_over_peer() -> None:
    ratios = peer_ratios(LOOPSERVE, PEER)

    assert ratios.p50_c1 == pytest.approx(0.5)
    assert ratios.p99_c1 == pytest.approx(1.25)
    assert ratios.throughput_c16 == pytest.approx(1.5)


def test_a_variant_without_a_peer_has_no_ratios() -> None:
    result = VariantResult("int8", "model.int8.onnx", 21.8, "built version", server=LOOPSERVE)

    assert result.peer_ratios() is None
    result.peer = PeerResult("mlserver", {}, phases=PEER)
    assert result.peer_ratios() == peer_ratios(LOOPSERVE, PEER)


def test_phases_are_found_by_concurrency_whatever_the_server() -> None:
    assert at_concurrency(PEER, 16) is PEER[1]
    assert at_concurrency(LOOPSERVE, 1) is LOOPSERVE[0]
    with pytest.raises(StopIteration):
        at_concurrency(PEER, 4)


def test_agreement_counts_equal_top_labels_and_the_largest_probability_gap() -> None:
    expected = [("refund", [0.9, 0.1]), ("card", [0.2, 0.8])]
    answers = [("refund", [0.9, 0.1]), ("refund", [0.55, 0.45])]

    share, gap = agreement(answers, expected)

    assert share == 0.5
    assert math.isclose(gap, 0.35)
