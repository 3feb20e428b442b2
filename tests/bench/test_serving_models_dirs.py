"""The serving benchmark's copies of the model definitions: each changes one thing."""

from __future__ import annotations

from pathlib import Path

from bench.serving import MODEL, REPO, models_dir_with_cache, models_dir_without_drift
from service.config import load_model_definition


def test_without_drift_turns_monitoring_off_and_keeps_the_rest(tmp_path: Path) -> None:
    original = load_model_definition(REPO / "models", MODEL)

    copied = load_model_definition(models_dir_without_drift(REPO / "models", tmp_path), MODEL)

    assert original.drift.enabled and not copied.drift.enabled
    assert copied.serving == original.serving
    assert copied.labels == original.labels


def test_with_cache_turns_the_response_cache_on(tmp_path: Path) -> None:
    copied = load_model_definition(models_dir_with_cache(REPO / "models", tmp_path), MODEL)

    assert copied.serving.cache
