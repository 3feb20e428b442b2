"""bench/settings_ab.py's model copies and its summary (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.serving import MODEL, REPO
from bench.settings_ab import Round, models_dir_with, summary
from service.config import load_model_definition


def test_each_side_gets_its_overrides_and_nothing_else(tmp_path: Path) -> None:
    models = models_dir_with(REPO / "models", ["serving.thread_spin_us=7"], tmp_path / "a")

    changed = load_model_definition(models, MODEL)
    original = load_model_definition(REPO / "models", MODEL)
    assert changed.serving.thread_spin_us == 7
    assert changed.serving.max_batch_size == original.serving.max_batch_size
    assert changed.labels == original.labels


def test_lists_and_other_sections_can_be_overridden(tmp_path: Path) -> None:
    overrides = ["drift.detectors=[]", "model.max_seq_length=64", "serving.int8=false"]

    models = models_dir_with(REPO / "models", overrides, tmp_path / "b")
    changed = load_model_definition(models, MODEL)

    assert not changed.drift.enabled
    assert changed.max_seq_length == 64
    assert not changed.serving.int8


@pytest.mark.parametrize(
    ("override", "message"),
    [("serving.no_such_key=1", "unknown key"), ("serving.thread_spin_us=-5", "thread_spin_us")],
)
def test_an_override_the_model_refuses_stops_the_bench(
    tmp_path: Path, override: str, message: str
) -> None:
    with pytest.raises(SystemExit, match=message):
        models_dir_with(REPO / "models", [override], tmp_path / "a")


def test_the_summary_pairs_rounds_and_takes_the_median_of_their_ratios() -> None:
    a = [
        Round(2.0, 8.0, 400.0, 4.0, 0),
        Round(3.0, 9.0, 300.0, 5.0, 0),
        Round(2.5, 7.0, 500.0, 4.5, 0),
    ]
    b = [
        Round(1.0, 8.0, 440.0, 3.6, 0),
        Round(3.3, 9.0, 300.0, 4.5, 0),
        Round(2.5, 3.5, 400.0, 3.6, 0),
    ]

    rows = summary({"a": a, "b": b})

    assert rows["p50_ms"]["b_over_a"] == pytest.approx([0.5, 1.1, 1.0])
    assert rows["p50_ms"]["b_over_a_median"] == pytest.approx(1.0)
    assert rows["p50_ms"]["a_median"] == 2.5 and rows["p50_ms"]["b_spread"] == (1.0, 3.3)
    assert rows["texts_per_s"]["b_over_a_median"] == pytest.approx(1.0)
    assert rows["p99_ms"]["b_over_a_median"] == pytest.approx(1.0)
    assert rows["server_cpu_ms"]["b_over_a_median"] == pytest.approx(0.9)
