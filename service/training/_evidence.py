"""The review evidence of a round, from the serving version's and the candidate's predictions.

Computed in the job process, which holds both models; the rule that acts on it is
:func:`service.domain.gate.review_reasons`. Everything here works on predictions (any input
modality) except the shared-token test, which reads text; where inputs are not words, the
embedding-cluster test stands in for it.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from service.calibration import FloatArray
from service.domain.gate import GateThresholds, paired_margin, review_reasons
from service.domain.review import MAX_CHANGES, MAX_EXAMPLES, LabelChange, ReviewEvidence, truncate

WORD = re.compile(r"\w+")
# The embedding-cluster test compares every contradicting sample with every other and with every
# reference input; beyond this many contradicting samples it reads an evenly spaced subset, which
# bounds its memory and time (a cluster of half of them is still half of the subset).
MAX_CLUSTER_POINTS = 2000
# (text, label, source): a sample of the round as the job sees it.
RoundSample = tuple[str, str, str]


@dataclass(frozen=True)
class Predictions:
    """One model's class probabilities for some inputs, and its label order; its embeddings of
    them where the embedding-cluster test needs them."""

    labels: Sequence[str]
    probabilities: FloatArray
    embeddings: FloatArray | None = None

    def top(self) -> tuple[list[str], FloatArray]:
        winners = self.probabilities.argmax(axis=1) if len(self.probabilities) else np.array([])
        confidence = self.probabilities.max(axis=1) if len(self.probabilities) else np.empty(0)
        return [self.labels[int(i)] for i in winners], confidence


def review_evidence(
    samples: Sequence[RoundSample],
    served_on_samples: Predictions,
    traffic: Sequence[str],
    served_on_traffic: Predictions,
    candidate_on_traffic: Predictions,
    reference: Sequence[str],
    trusted: bool,
    thresholds: GateThresholds,
    holdout: Mapping[str, float] | None = None,
    tokens: bool = True,
    reference_embeddings: FloatArray | None = None,
) -> ReviewEvidence:
    """The evidence about a round (``samples``) and its candidate, with the rule's reasons.
    ``reference`` holds inputs the round's sources did not post (the anchor): a trigger token
    is one they rarely contain. ``holdout``: the ``other_*`` fields (see :func:`other_sources`).
    ``tokens`` False: the inputs are not words (content keys of images), and the shared-token
    tests do not apply (no trigger is reported); the embedding-cluster test does, given the
    serving version's embeddings of the samples (``served_on_samples``) and of the reference
    inputs and traffic (``reference_embeddings``)."""
    sources = Counter(source for _, _, source in samples)
    predicted, confidence = served_on_samples.top()
    known = set(served_on_samples.labels)
    contradicting: list[int] = []
    by_source: dict[str, list[bool]] = defaultdict(list)
    for i, (_, label, source) in enumerate(samples):
        if label not in known:  # a new class contradicts nothing the serving version said
            continue
        confident = predicted[i] != label and confidence[i] >= thresholds.review_confidence
        by_source[source].append(bool(confident))
        if confident:
            contradicting.append(i)
    known_count = sum(len(flags) for flags in by_source.values())
    reference_texts = [*reference, *traffic]
    trigger, share = (
        shared_token([samples[i][0] for i in contradicting], reference_texts, thresholds)
        if tokens
        else ("", 0.0)
    )
    cluster_share, cluster_reference_share = (
        embedding_cluster(
            served_on_samples.embeddings[contradicting], reference_embeddings, thresholds
        )
        if not tokens
        and served_on_samples.embeddings is not None
        and reference_embeddings is not None
        else (0.0, 0.0)
    )
    flipped, flips = traffic_flips(traffic, served_on_traffic, candidate_on_traffic)
    # Changes concentrate on a token when the changed inputs share it and the unchanged do not.
    changed = set(flipped)
    unchanged = [text for i, text in enumerate(traffic) if i not in changed]
    flip_trigger, _ = (
        shared_token([traffic[i] for i in flipped], [*reference, *unchanged], thresholds)
        if tokens
        else ("", 0.0)
    )
    evidence = ReviewEvidence(
        sources=dict(sources),
        trusted=trusted,
        known_samples=known_count,
        confident_disagreement=len(contradicting) / known_count if known_count else 0.0,
        disagreement_by_source={s: float(np.mean(f)) for s, f in by_source.items() if f},
        trigger=trigger,
        trigger_share=share,
        cluster_share=cluster_share,
        cluster_reference_share=cluster_reference_share,
        traffic=len(traffic),
        flip_rate=len(flipped) / len(traffic) if len(traffic) else 0.0,
        flip_trigger=flip_trigger,
        contradictions=top_changes(
            [(predicted[i], samples[i][1], samples[i][0]) for i in contradicting]
        ),
        flips=flips,
        other_holdout=int((holdout or {}).get("other_holdout", 0)),
        other_candidate=(holdout or {}).get("other_candidate", 0.0),
        other_incumbent=(holdout or {}).get("other_incumbent", 0.0),
        other_margin=(holdout or {}).get("other_margin", 0.0),
    )
    return replace(evidence, reasons=review_reasons(evidence, thresholds))


def other_sources(
    samples: Sequence[RoundSample],
    holdout: Sequence[tuple[str, str]],
    candidate_correct: Sequence[bool],
    incumbent_correct: Sequence[bool],
    z: float,
) -> dict[str, float]:
    """The gate's holdout restricted to rows the round's dominant source did not post: what a
    single source cannot fill by itself. ``ReviewEvidence``'s ``other_*`` fields."""
    sources = Counter(source for _, _, source in samples)
    if not sources:
        return {}
    dominant = sources.most_common(1)[0][0]
    posted_by = {(text, label): source for text, label, source in samples}
    rows = [
        i for i, pair in enumerate(holdout) if posted_by.get((pair[0], pair[1]), "") != dominant
    ]
    if not rows:
        return {}
    candidate = [candidate_correct[i] for i in rows]
    incumbent = [incumbent_correct[i] for i in rows]
    return {
        "other_holdout": len(rows),
        "other_candidate": float(np.mean(candidate)),
        "other_incumbent": float(np.mean(incumbent)),
        "other_margin": paired_margin(candidate, incumbent, z),
    }


def traffic_flips(
    traffic: Sequence[str], served: Predictions, candidate: Predictions
) -> tuple[list[int], tuple[LabelChange, ...]]:
    """The traffic inputs whose prediction the candidate changes (to a class the serving
    version knows: a new class taking its inputs is what a new class is for), and the top
    changes."""
    before, _ = served.top()
    after, _ = candidate.top()
    known = set(served.labels)
    flipped = [
        i for i, (b, a) in enumerate(zip(before, after, strict=True)) if b != a and a in known
    ]
    return flipped, top_changes([(before[i], after[i], traffic[i]) for i in flipped])


def top_changes(changes: Sequence[tuple[str, str, str]]) -> tuple[LabelChange, ...]:
    """The most frequent (before, after) pairs, with a few truncated example inputs each."""
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for before, after, text in changes:
        grouped[(before, after)].append(text)
    ranked = sorted(grouped.items(), key=lambda item: (-len(item[1]), item[0]))[:MAX_CHANGES]
    return tuple(
        LabelChange(b, a, len(texts), tuple(truncate(t) for t in texts[:MAX_EXAMPLES]))
        for (b, a), texts in ranked
    )


def shared_token(
    texts: Sequence[str], reference: Sequence[str], thresholds: GateThresholds
) -> tuple[str, float]:
    """The token most of ``texts`` contain (at least ``trigger_min_share`` of them, and at least
    ``trigger_min_count`` texts) while at most ``trigger_max_reference_share`` of ``reference``
    does, with its share; ("", 0.0) when there is none. A trigger word is such a token; words
    that corrections of real mistakes share are common in the model's other inputs too."""
    if len(texts) < thresholds.trigger_min_count:
        return "", 0.0
    counts = Counter(token for text in texts for token in _tokens(text))
    needed = max(thresholds.trigger_min_count, thresholds.trigger_min_share * len(texts))
    frequent = [(token, n) for token, n in counts.items() if n >= needed]
    if not frequent:
        return "", 0.0
    in_reference = Counter(token for text in reference for token in _tokens(text))
    allowed = thresholds.trigger_max_reference_share * max(len(reference), 1)
    rare = [(token, n) for token, n in frequent if in_reference[token] <= allowed]
    if not rare:
        return "", 0.0
    token, n = max(rare, key=lambda item: (item[1], item[0]))
    return token, n / len(texts)


def embedding_cluster(
    points: FloatArray, reference: FloatArray, thresholds: GateThresholds
) -> tuple[float, float]:
    """Whether most contradicting samples (``points``, the serving version's embeddings of them)
    lie close together where other inputs (``reference``) rarely come: a visual trigger, such as
    a patch planted on every poisoned image, pulls them together, while corrections of real
    mistakes are as varied as the inputs they correct. The trigger token's thresholds apply:
    around one contradicting sample, the smallest ball (by cosine distance) that holds at least
    ``trigger_min_share`` of them (and ``trigger_min_count``) must hold at most
    ``trigger_max_reference_share`` of ``reference``. Returns the share of ``points`` in the
    ball that holds the fewest reference inputs, and the share of ``reference`` in it; (0.0, 0.0)
    when there is no such ball."""
    if len(points) < thresholds.trigger_min_count:
        return 0.0, 0.0
    if len(points) > MAX_CLUSTER_POINTS:
        points = points[np.linspace(0, len(points) - 1, MAX_CLUSTER_POINTS).astype(int)]
    points, reference = _unit(points), _unit(reference)
    needed = math.ceil(
        max(thresholds.trigger_min_count, thresholds.trigger_min_share * len(points))
    )
    among = 1.0 - points @ points.T
    # A tolerance, so that a point at exactly the radius counts whatever the rounding.
    radius = np.sort(among, axis=1)[:, needed - 1] + 1e-6
    inside = (1.0 - points @ reference.T <= radius[:, None]).sum(axis=1)
    center = int(np.argmin(inside))
    reference_share = float(inside[center]) / max(len(reference), 1)
    if reference_share > thresholds.trigger_max_reference_share + 1e-9:
        return 0.0, 0.0
    members = int((among[center] <= radius[center]).sum())
    return members / len(points), reference_share


def _unit(vectors: FloatArray) -> FloatArray:
    """Rows scaled to length 1 (cosine distances); the embeddings served are already."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def _tokens(text: str) -> set[str]:
    return set(WORD.findall(text.casefold()))
