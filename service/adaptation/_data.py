"""Which samples a fine-tune job sees: train, early-stopping validation, gate holdout, anchor."""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass

from service.config import AdaptationRecipe

Pairs = list[tuple[str, str]]
# Below this many reserved old samples the anchor falls back to (possibly trained-on) old data.
MIN_HELD_OUT_ANCHOR = 30


@dataclass(frozen=True)
class JobData:
    train: Pairs
    validation: Pairs
    holdout: Pairs  # new samples, never trained on: the gate's "new data"
    anchor: Pairs  # older samples, never trained on in this job: the gate's forgetting check
    new_labels: list[str]
    anchor_held_out: bool = False  # the anchor comes from the reserve: no version trained on it


def reserved(text: str, label: str, fraction: float) -> bool:
    """Whether a labeled sample is in the evaluation reserve: a stable choice of about
    ``fraction`` of all samples, by a hash of the text and label, that no job ever trains on.
    It gives each gate new data to judge on and, later, old data that neither the candidate nor
    the serving version has seen, so that forgetting is measured rather than the loss of
    memorised training rows. Hashing the content (not the id) keeps a text posted twice on one
    side."""
    digest = hashlib.sha256(f"{text}\x1f{label}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def select(
    new: Pairs,
    old: Pairs,
    known_labels: list[str],
    recipe: AdaptationRecipe,
    seed: int,
    reserved_new: Pairs | None = None,
    reserved_old: Pairs | None = None,
) -> JobData:
    """Split new samples into train/holdout, old ones into anchor/replay, and mix the training set.

    ``new`` and ``old`` are the samples a job may train on; ``reserved_new`` and ``reserved_old``
    those of the evaluation reserve. The holdout is the reserved new samples (else a stratified
    share of ``new``); the anchor is the reserved old samples once there are at least
    ``MIN_HELD_OUT_ANCHOR`` (else a random share of ``old``, which the serving version may have
    trained on). Reserved samples are never trained on.
    """
    rng = random.Random(seed)
    reserved_new, reserved_old = reserved_new or [], reserved_old or []
    if reserved_new:
        new_train, holdout = new[:], reserved_new[:]
    else:
        new_train, holdout = _stratified(new, recipe.holdout_fraction, rng)
        if not holdout and len(new_train) >= 2:
            # Few new samples: hold one out anyway, so the gate always sees some new data.
            holdout = [new_train.pop()]
    old = old[:]
    rng.shuffle(old)
    held_out_anchor = len(reserved_old) >= MIN_HELD_OUT_ANCHOR
    if held_out_anchor:
        anchor = reserved_old[:]
        rng.shuffle(anchor)
        anchor, rest = anchor[: recipe.anchor_size], old
    else:
        anchor_size = min(recipe.anchor_size, len(old) // 2)
        anchor, rest = old[:anchor_size], old[anchor_size:]
    replay = rest[: round(recipe.replay_ratio * len(new_train))]
    mix = new_train + replay
    train, validation = _stratified(mix, recipe.validation_fraction, rng)
    seen = set(known_labels)
    everything_new = new + reserved_new
    new_labels = [
        label for label in dict.fromkeys(label for _, label in everything_new) if label not in seen
    ]
    return JobData(train, validation, holdout, anchor, new_labels, held_out_anchor)


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
