"""Which samples a fine-tune job sees: train, early-stopping validation, gate holdout, anchor."""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from service.config import AdaptationRecipe
from service.domain.loop import Sample

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


def normalized(text: str) -> str:
    """What makes two texts the same sample: case and runs of white space do not count."""
    return " ".join(text.casefold().split())


def curate(
    samples: list[Sample], max_source_share: float, seed: int, flood_copies: int = 5
) -> list[Sample]:
    """The samples a job may use: each text once, no flood, and no source above its share.

    Each text counts once: the first posted, so a later copy with another label does not
    override it. A text stored ``flood_copies`` times or more (under different ids: re-posting a
    file is idempotent on ids and stores nothing twice) is a flood, and is left out entirely:
    labeling tools do not post one text that often, junk does. With ``max_source_share`` below 1 and two
    or more sources (token names), each source keeps at most that share of the total, the rest of
    its samples dropped at random, so that one source cannot outvote the others in training or
    fill the gate's holdout. The share is symmetric: it also caps an honest majority when the
    other sources posted little, which is why it is off (1.0) by default. Order (by seq) is
    kept.
    """
    copies = Counter(normalized(sample.text) for sample in samples)
    seen: set[str] = set()
    unique = []
    for sample in samples:
        key = normalized(sample.text)
        if key not in seen and copies[key] < flood_copies:
            seen.add(key)
            unique.append(sample)
    by_source: dict[str, list[Sample]] = defaultdict(list)
    for sample in unique:
        by_source[sample.source].append(sample)
    cap = source_cap([len(group) for group in by_source.values()], max_source_share)
    if cap is None:
        return unique
    rng = random.Random(seed)
    kept: set[int] = set()
    for group in by_source.values():
        chosen = group if len(group) <= cap else rng.sample(group, cap)
        kept.update(s.seq for s in chosen)
    return [s for s in unique if s.seq in kept]


def source_cap(counts: list[int], share: float) -> int | None:
    """The largest per-source count ``c`` with ``c <= share * sum(min(n, c))``: no source above
    ``share`` of the capped total. None when no cap applies (one source, or share 1)."""
    if len(counts) < 2 or share >= 1:
        return None
    low, high = 1, max(counts)
    while low < high:  # the condition holds for small c and fails beyond the answer
        mid = (low + high + 1) // 2
        if mid <= share * sum(min(n, mid) for n in counts):
            low = mid
        else:
            high = mid - 1
    return low


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
