"""Parts of the fine-tune job process that need no model: which rows calibrate the candidate."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from service.training._finetune import _calibration

LABELS = ["greeting", "complaint"]


class FakeSession:
    """Predicts each text's label with 0.9, recording which texts it was asked about."""

    labels = LABELS
    embedding_dim = 4

    def __init__(self) -> None:
        self.asked: list[str] = []

    def predict(self, texts: list[str]) -> SimpleNamespace:
        self.asked += texts
        rows = [[0.9, 0.1] if text.startswith("hello") else [0.1, 0.9] for text in texts]
        embedding = np.zeros((len(texts), self.embedding_dim), dtype=np.float32)
        return SimpleNamespace(probabilities=np.array(rows, dtype=np.float32), embedding=embedding)


VALIDATION = [("hello there", "greeting"), ("it broke", "complaint"), ("hello", "complaint")]


def test_the_holdout_calibrates_from_the_gate_probabilities() -> None:
    session = FakeSession()
    spec = SimpleNamespace(holdout=[("hello", "greeting"), ("bad", "complaint")], validation=[])
    given = np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32)
    calibration = _calibration(spec, session, given)
    assert (calibration.source, calibration.rows, calibration.accuracy) == ("holdout", 2, 1.0)
    assert session.asked == []  # the gate's probabilities, not a second prediction


def test_without_a_holdout_the_validation_rows_calibrate() -> None:
    session = FakeSession()
    spec = SimpleNamespace(holdout=[], validation=VALIDATION)
    calibration = _calibration(spec, session, np.empty((0, 2)))
    assert (calibration.source, calibration.rows) == ("validation", 3)
    assert calibration.accuracy == pytest.approx(0.6667)
    assert session.asked == [text for text, _ in VALIDATION]


def test_without_held_out_rows_the_temperature_stays_one() -> None:
    spec = SimpleNamespace(holdout=[], validation=[])
    calibration = _calibration(spec, FakeSession(), np.empty((0, 2)))
    assert (calibration.source, calibration.rows, calibration.temperature) == ("none", 0, 1.0)
