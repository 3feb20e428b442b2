"""The training texts a version's drift reference is built from."""

from __future__ import annotations

import random

from service.config import ModelDefinition, read_labeled_csv
from service.registry import VersionInfo
from service.store import SampleStore


def training_texts(
    definition: ModelDefinition, store: SampleStore, info: VersionInfo, size: int, seed: int
) -> list[str]:
    """The seed texts and the stored samples ``info`` was trained with (those up to its
    ``samples_upto``), restricted to its labels, deduplicated; a seeded sample of ``size``."""
    labels = set(info.labels)
    texts: list[str] = []
    if definition.seed_path.is_file():
        texts += [text for text, label in read_labeled_csv(definition.seed_path) if label in labels]
    upto = info.meta.samples_upto
    if upto:
        texts += [s.text for s in store.samples(info.model, 0, upto) if s.label in labels]
    unique = list(dict.fromkeys(texts))
    if len(unique) > size:
        unique = random.Random(seed).sample(unique, size)
    return unique
