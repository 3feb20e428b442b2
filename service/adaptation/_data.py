"""Which samples a fine-tune job sees: train, early-stopping validation, gate holdout, anchor."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

from service.config import AdaptationRecipe

Pairs = list[tuple[str, str]]


@dataclass(frozen=True)
class JobData:
    train: Pairs
    validation: Pairs
    holdout: Pairs  # new samples, never trained on: the gate's "new data"
    anchor: Pairs  # older samples, never trained on in this job: the gate's forgetting check
    new_labels: list[str]


def select(
    new: Pairs, old: Pairs, known_labels: list[str], recipe: AdaptationRecipe, seed: int
) -> JobData:
    """Split new samples into train/holdout, old ones into anchor/replay, and mix the training set."""
    rng = random.Random(seed)
    new_train, holdout = _stratified(new, recipe.holdout_fraction, rng)
    if not holdout and len(new_train) >= 2:
        # Few new samples: hold one out anyway, so the gate always sees some new data.
        holdout = [new_train.pop()]
    old = old[:]
    rng.shuffle(old)
    anchor_size = min(recipe.anchor_size, len(old) // 2)
    anchor, rest = old[:anchor_size], old[anchor_size:]
    replay = rest[: round(recipe.replay_ratio * len(new_train))]
    mix = new_train + replay
    train, validation = _stratified(mix, recipe.validation_fraction, rng)
    seen = set(known_labels)
    new_labels = [label for label in dict.fromkeys(label for _, label in new) if label not in seen]
    return JobData(train, validation, holdout, anchor, new_labels)


def _stratified(pairs: Pairs, fraction: float, rng: random.Random) -> tuple[Pairs, Pairs]:
    """Hold out ``fraction`` of each label (none of a label with a single example)."""
    by_label: dict[str, Pairs] = defaultdict(list)
    for pair in pairs:
        by_label[pair[1]].append(pair)
    kept, held = [], []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        count = round(len(group) * fraction) if len(group) > 1 else 0
        held.extend(group[:count])
        kept.extend(group[count:])
    rng.shuffle(kept)
    return kept, held
