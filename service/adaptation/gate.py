"""The promotion rule: compare a candidate with the serving version on new and old data."""

from __future__ import annotations

from service.adaptation.types import GateResult
from service.config import GateThresholds


def decide(
    *,
    candidate_new: float,
    incumbent_new: float,
    candidate_anchor: float,
    incumbent_anchor: float,
    new_examples: int,
    anchor_examples: int,
    thresholds: GateThresholds,
) -> GateResult:
    """Promote only if not worse on the new-data holdout beyond the tolerance and forgetting on
    the anchor set stays within ``max_forgetting``."""
    # Without a holdout (a single new sample) the new-data criterion has nothing to judge.
    worse_on_new = (
        new_examples > 0 and incumbent_new - candidate_new > thresholds.new_data_tolerance + 1e-9
    )
    forgetting = incumbent_anchor - candidate_anchor
    forgets = forgetting > thresholds.max_forgetting + 1e-9
    if worse_on_new:
        reason = (
            f"worse on new data: {candidate_new:.3f} vs {incumbent_new:.3f} "
            f"(tolerance {thresholds.new_data_tolerance:.3f})"
        )
    elif forgets:
        reason = (
            f"forgets old data: anchor {candidate_anchor:.3f} vs {incumbent_anchor:.3f} "
            f"(max forgetting {thresholds.max_forgetting:.3f})"
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
        promote=not (worse_on_new or forgets),
        reason=reason,
    )
