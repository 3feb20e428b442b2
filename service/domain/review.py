"""The review rule: whether a candidate that passed the accuracy gate waits for a person.

The accuracy gate cannot see a backdoor taught by one source: its new-data holdout is drawn from
that source's own samples, which the candidate learned to agree with, and the anchor holds no
input with the trigger. So a round that not every source of is trusted is also judged on evidence
the job process computes with both models (see ``service.training._evidence``):

- confident disagreement: the share of a source's samples, among labels the serving version
  knows, that it confidently labels otherwise. A labeling team corrects mistakes, which the
  serving version mostly made without confidence; a relabeling attack contradicts it;
- a trigger: a token that most of the contradicting samples share and the serving version's
  other inputs (recent traffic, the anchor) rarely contain; where inputs are not words (images),
  an embedding cluster: most of the contradicting samples lie close together in the serving
  version's embedding space, where its other inputs rarely come;
- the shadow comparison on recent production traffic: how many predictions the candidate
  changes, and whether the changes concentrate on inputs that share such a token.

A suspicious candidate is published as ``pending`` with its :class:`ReviewEvidence` and serves
only once an operator approves it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_EXAMPLE_CHARS = 80  # examples in the evidence are truncated: they are for recognition
MAX_EXAMPLES = 3
MAX_CHANGES = 5


@dataclass(frozen=True)
class LabelChange:
    """Inputs whose label moves from ``before`` to ``after``: the serving version's prediction
    and a posted label (contradictions), or the serving version's and the candidate's
    predictions (traffic flips)."""

    before: str
    after: str
    count: int
    examples: tuple[str, ...] = ()

    @staticmethod
    def from_dict(value: object) -> LabelChange | None:
        if not isinstance(value, Mapping):
            return None
        try:
            return LabelChange(
                str(value["before"]),
                str(value["after"]),
                int(value["count"]),
                tuple(str(e) for e in value.get("examples", ())),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class ReviewEvidence:
    """What the job measured about a round and its candidate, and why it waits (``reasons``)."""

    sources: dict[str, int] = field(default_factory=dict)  # the round's samples per source
    trusted: bool = False  # every source is trusted: the review does not apply
    known_samples: int = 0  # samples with a label the serving version knows
    confident_disagreement: float = 0.0  # of those, the share it confidently labels otherwise
    disagreement_by_source: dict[str, float] = field(default_factory=dict)
    trigger: str = ""  # the token the contradicting samples share, if any
    trigger_share: float = 0.0  # the share of contradicting samples that contain it
    # Inputs that are not words: the share of contradicting samples in a tight cluster of the
    # serving version's embeddings (0: none found), and the share of other inputs inside it.
    cluster_share: float = 0.0
    cluster_reference_share: float = 0.0
    traffic: int = 0  # recent served inputs compared
    flip_rate: float = 0.0  # the share of them whose prediction the candidate changes
    flip_trigger: str = ""  # the token the changed traffic predictions share, if any
    contradictions: tuple[LabelChange, ...] = ()  # serving prediction -> posted label
    flips: tuple[LabelChange, ...] = ()  # serving prediction -> candidate prediction, on traffic
    # The gate's holdout rows that the round's dominant source did not post: candidate and
    # serving accuracy on them, and the noise margin a drop must exceed (see GateThresholds).
    other_holdout: int = 0
    other_candidate: float = 0.0
    other_incumbent: float = 0.0
    other_margin: float = 0.0
    reasons: tuple[str, ...] = ()

    @property
    def suspicious(self) -> bool:
        return bool(self.reasons)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(value: object) -> ReviewEvidence | None:
        """The recorded evidence, or None when absent or malformed (older versions)."""
        if not isinstance(value, Mapping):
            return None
        try:
            return ReviewEvidence(
                sources={str(k): int(v) for k, v in dict(value.get("sources", {})).items()},
                trusted=bool(value.get("trusted", False)),
                known_samples=int(value.get("known_samples", 0)),
                confident_disagreement=float(value.get("confident_disagreement", 0.0)),
                disagreement_by_source={
                    str(k): float(v)
                    for k, v in dict(value.get("disagreement_by_source", {})).items()
                },
                trigger=str(value.get("trigger", "")),
                trigger_share=float(value.get("trigger_share", 0.0)),
                cluster_share=float(value.get("cluster_share", 0.0)),
                cluster_reference_share=float(value.get("cluster_reference_share", 0.0)),
                traffic=int(value.get("traffic", 0)),
                flip_rate=float(value.get("flip_rate", 0.0)),
                flip_trigger=str(value.get("flip_trigger", "")),
                contradictions=_changes(value.get("contradictions")),
                flips=_changes(value.get("flips")),
                other_holdout=int(value.get("other_holdout", 0)),
                other_candidate=float(value.get("other_candidate", 0.0)),
                other_incumbent=float(value.get("other_incumbent", 0.0)),
                other_margin=float(value.get("other_margin", 0.0)),
                reasons=tuple(str(r) for r in value.get("reasons", ())),
            )
        except (TypeError, ValueError):
            return None


def _changes(value: object) -> tuple[LabelChange, ...]:
    if not isinstance(value, list | tuple):
        return ()
    return tuple(c for c in (LabelChange.from_dict(v) for v in value) if c is not None)


def truncate(text: str, limit: int = MAX_EXAMPLE_CHARS) -> str:
    """One line of at most ``limit`` characters, for examples shown to an operator."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
