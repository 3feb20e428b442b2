"""Temperature scaling and the label-free accuracy estimate on synthetic predictions."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from service.calibration import (
    Calibration,
    calibrate,
    calibrated,
    estimated_accuracy,
    fit_temperature,
)

CLASSES = 5


def calibrated_predictions(
    rows: int, seed: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Probabilities and labels drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, size=(rows, CLASSES))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    # Inverse-CDF sampling, row by row: each label drawn with the probability its row states.
    draws = rng.random((rows, 1))
    labels = np.minimum((draws > probabilities.cumsum(axis=1)).sum(axis=1), CLASSES - 1)
    return probabilities, labels.astype(np.int64)


def true_accuracy(probabilities: npt.NDArray[np.float64], labels: npt.NDArray[np.int64]) -> float:
    return float(np.mean(probabilities.argmax(axis=1) == labels))


def test_fit_temperature_undoes_over_confidence() -> None:
    probabilities, labels = calibrated_predictions(5000, seed=0)
    sharpened = calibrated(probabilities, 0.5)  # over-confident: T = 2 undoes it
    assert fit_temperature(sharpened, labels) == pytest.approx(2.0, rel=0.1)
    assert fit_temperature(probabilities, labels) == pytest.approx(1.0, rel=0.1)


def test_estimated_accuracy_of_calibrated_predictions_matches_their_accuracy() -> None:
    fit_rows, fit_labels = calibrated_predictions(3000, seed=1)
    temperature = calibrate(calibrated(fit_rows, 0.5), fit_labels, "validation").temperature
    probabilities, labels = calibrated_predictions(10_000, seed=2)
    overconfident = calibrated(probabilities, 0.5)
    estimate = estimated_accuracy(overconfident, temperature)
    assert abs(estimate - true_accuracy(overconfident, labels)) <= 0.02
    # Uncalibrated, the mean top probability overstates the accuracy.
    assert estimated_accuracy(overconfident, 1.0) > true_accuracy(overconfident, labels) + 0.05


def test_calibrate_records_rows_and_accuracy() -> None:
    probabilities, labels = calibrated_predictions(200, seed=3)
    calibration = calibrate(probabilities, labels, "holdout")
    assert calibration.rows == 200 and calibration.source == "holdout"
    assert calibration.accuracy == pytest.approx(true_accuracy(probabilities, labels), abs=1e-4)


def test_calibrate_without_rows_keeps_the_probabilities() -> None:
    calibration = calibrate(np.empty((0, CLASSES)), np.empty(0, dtype=np.int64), "none")
    assert calibration.temperature == 1.0 and calibration.rows == 0
    assert math.isnan(calibration.accuracy)
    assert math.isnan(estimated_accuracy(np.empty((0, CLASSES)), 1.0))


@pytest.mark.parametrize("value", [None, {}, {"temperature": "x"}, [1.5], "1.5"])
def test_a_missing_or_malformed_record_reads_as_none(value: object) -> None:
    assert Calibration.from_dict(value) is None


def test_the_record_round_trips() -> None:
    calibration = Calibration(temperature=1.7, rows=12, accuracy=0.9167, source="validation")
    assert Calibration.from_dict(calibration.as_dict()) == calibration
