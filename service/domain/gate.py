"""The promotion rule: compare a candidate with the serving version on new and old data.

Shared by the job process, which scores and decides, and the server, which configures the
thresholds and acts on the decision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from service.domain.loop import GateResult
from service.domain.review import ReviewEvidence
from service.errors import ConfigError


@dataclass(frozen=True)
class GateThresholds:
    """A candidate is promoted only if it is not worse than the serving version on a holdout of
    the new samples by more than ``new_data_tolerance`` and loses at most ``max_forgetting`` of
    accuracy on an anchor set of older samples. A drop counts only once it exceeds its limit by
    ``confidence_z`` standard errors of the paired difference (one-sided; 1.64 is 95 %): on a few
    hundred rows one point is a handful of rows, well inside the noise. 0 compares raw scores."""

    new_data_tolerance: float = 0.02
    max_forgetting: float = 0.01
    confidence_z: float = 1.64
    # The review of rounds not every source of is trusted (see service.domain.review); the
    # defaults come from bench/poisoning.py (README, "What the gate protects against").
    review: bool = True
    review_confidence: float = 0.9  # a disagreement counts from this serving confidence up
    max_confident_disagreement: float = 0.3  # of one source's samples
    review_min_samples: int = 20  # a source's rate counts from this many samples
    # A trigger token, or an embedding cluster where inputs are not words (see _evidence).
    trigger_min_count: int = 10  # contradicting samples (or changed traffic inputs) needed
    trigger_min_share: float = 0.5  # of those, the share that must contain one token
    trigger_max_reference_share: float = 0.05  # of the reference inputs that may contain it
    max_flip_rate: float = 0.3  # of recent traffic whose prediction the candidate may change

    def validate(self, where: str) -> None:
        for ok, message in (
            (0 <= self.new_data_tolerance <= 1, "new_data_tolerance must be in [0, 1]"),
            (0 <= self.max_forgetting <= 1, "max_forgetting must be in [0, 1]"),
            (0 <= self.confidence_z <= 5, "confidence_z must be in [0, 5]"),
            (0 < self.review_confidence <= 1, "review_confidence must be in (0, 1]"),
            (
                0 <= self.max_confident_disagreement <= 1,
                "max_confident_disagreement must be in [0, 1]",
            ),
            (self.review_min_samples >= 1, "review_min_samples must be >= 1"),
            (self.trigger_min_count >= 1, "trigger_min_count must be >= 1"),
            (0 < self.trigger_min_share <= 1, "trigger_min_share must be in (0, 1]"),
            (
                0 <= self.trigger_max_reference_share <= 1,
                "trigger_max_reference_share must be in [0, 1]",
            ),
            (0 <= self.max_flip_rate <= 1, "max_flip_rate must be in [0, 1]"),
        ):
            if not ok:
                raise ConfigError(f"{where}: {message}")


def decide(
    *,
    candidate_new: float,
    incumbent_new: float,
    candidate_anchor: float,
    incumbent_anchor: float,
    new_examples: int,
    anchor_examples: int,
    thresholds: GateThresholds,
    new_margin: float = 0.0,
    anchor_margin: float = 0.0,
    anchor_held_out: bool = False,
) -> GateResult:
    """Promote only if not worse on the new-data holdout beyond the tolerance and forgetting on
    the anchor set stays within ``max_forgetting``; a drop must exceed its limit by its margin
    (see :func:`paired_margin`) to count."""
    # Without a holdout (a single new sample) the new-data criterion has nothing to judge.
    worse_on_new = (
        new_examples > 0
        and incumbent_new - candidate_new - new_margin > thresholds.new_data_tolerance + 1e-9
    )
    forgetting = incumbent_anchor - candidate_anchor
    forgets = forgetting - anchor_margin > thresholds.max_forgetting + 1e-9
    # Promotion needs older data to measure forgetting on: new data alone can come from one
    # source that the candidate simply learned to agree with.
    no_anchor = anchor_examples == 0
    if no_anchor:
        reason = "no anchor of older data to measure forgetting on; nothing is promoted without one"
    elif worse_on_new:
        reason = (
            f"worse on new data: {candidate_new:.3f} vs {incumbent_new:.3f} "
            f"(tolerance {thresholds.new_data_tolerance:.3f} + noise margin {new_margin:.3f})"
        )
    elif forgets:
        reason = (
            f"forgets old data: anchor {candidate_anchor:.3f} vs {incumbent_anchor:.3f} "
            f"(max forgetting {thresholds.max_forgetting:.3f} + noise margin {anchor_margin:.3f})"
        )
    elif new_examples == 0:
        reason = f"no new-data holdout; anchor {candidate_anchor:.3f} vs {incumbent_anchor:.3f}"
    else:
        reason = (
            f"new data {candidate_new:.3f} vs {incumbent_new:.3f}, "
            f"anchor {candidate_anchor:.3f} vs {incumbent_anchor:.3f}"
        )
    return GateResult(
        candidate_new=candidate_new,
        incumbent_new=incumbent_new,
        candidate_anchor=candidate_anchor,
        incumbent_anchor=incumbent_anchor,
        new_examples=new_examples,
        anchor_examples=anchor_examples,
        promote=not (no_anchor or worse_on_new or forgets),
        reason=reason,
        new_margin=new_margin,
        anchor_margin=anchor_margin,
        anchor_held_out=anchor_held_out,
    )


def paired_margin(
    candidate_correct: Sequence[bool], incumbent_correct: Sequence[bool], z: float
) -> float:
    """``z`` standard errors of the paired accuracy difference on the same rows.

    Only rows where the two models disagree carry information: with ``d`` of them among ``n``
    rows, the difference's standard error is about sqrt(d) / n (the normal approximation of
    McNemar's test).
    """
    n = len(candidate_correct)
    if n == 0:
        return 0.0
    disagree = sum(c != i for c, i in zip(candidate_correct, incumbent_correct, strict=True))
    return z * math.sqrt(disagree) / n


def review_reasons(evidence: ReviewEvidence, thresholds: GateThresholds) -> tuple[str, ...]:
    """Why a candidate that passed the accuracy gate waits for an operator; empty when it need
    not (the review is off, or every source of the round is trusted)."""
    if not thresholds.review or evidence.trusted:
        return ()
    reasons = []
    counted = {
        source: rate
        for source, rate in evidence.disagreement_by_source.items()
        if evidence.sources.get(source, 0) >= thresholds.review_min_samples
    }
    worst = max(counted.items(), key=lambda item: item[1], default=None)
    if worst is not None and worst[1] > thresholds.max_confident_disagreement + 1e-9:
        reasons.append(
            f"source {worst[0]} contradicts the serving version with confidence on "
            f"{worst[1]:.0%} of its samples (limit {thresholds.max_confident_disagreement:.0%})"
        )
    if evidence.trigger:
        reasons.append(
            f"{evidence.trigger_share:.0%} of the contradicting samples contain "
            f"{evidence.trigger!r}, which other inputs rarely contain"
        )
    if evidence.cluster_share:
        reasons.append(
            f"{evidence.cluster_share:.0%} of the contradicting samples lie close together in "
            f"the serving version's embeddings, where {evidence.cluster_reference_share:.0%} "
            "of other inputs do (an embedding cluster)"
        )
    if evidence.traffic and evidence.flip_rate > thresholds.max_flip_rate + 1e-9:
        reasons.append(
            f"changes {evidence.flip_rate:.0%} of {evidence.traffic} recent predictions "
            f"(limit {thresholds.max_flip_rate:.0%})"
        )
    drop = evidence.other_incumbent - evidence.other_candidate - evidence.other_margin
    if (
        evidence.other_holdout >= thresholds.review_min_samples
        and drop > thresholds.new_data_tolerance + 1e-9
    ):
        reasons.append(
            f"worse on the {evidence.other_holdout} holdout samples other sources posted: "
            f"{evidence.other_candidate:.3f} vs {evidence.other_incumbent:.3f}"
        )
    if evidence.flip_trigger:
        reasons.append(
            f"the changed predictions concentrate on inputs containing {evidence.flip_trigger!r}"
        )
    return tuple(reasons)
