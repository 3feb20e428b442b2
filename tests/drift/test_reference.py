"""The training texts a version's drift reference is built from."""

from __future__ import annotations

from pathlib import Path

from conftest import TINY_MODEL

from service.config import ModelDefinition, read_labeled_csv
from service.domain.loop import NewSample
from service.drift import training_texts
from service.registry import ModelRegistry
from service.store import SQLiteStore


def test_seed_plus_the_samples_the_version_was_trained_on(
    tiny_definition: ModelDefinition, registry: ModelRegistry, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite")
    store.add(
        TINY_MODEL,
        [
            NewSample("trained on", "greeting", "s1"),
            NewSample("unknown label", "elsewhere", "s2"),
            NewSample("after the version", "greeting", "s3"),
        ],
    )
    info = registry.update_meta(1, samples_upto=2)
    seed = [t for t, _ in read_labeled_csv(tiny_definition.seed_path)]
    texts = training_texts(tiny_definition, store, info, size=10_000, seed=0)
    assert texts == [*dict.fromkeys(seed), "trained on"]
    sampled = training_texts(tiny_definition, store, info, size=10, seed=0)
    assert len(sampled) == 10 and set(sampled) <= set(texts)
    assert sampled == training_texts(tiny_definition, store, info, size=10, seed=0)
    store.close()
