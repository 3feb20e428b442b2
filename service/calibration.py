"""Confidence calibration and label-free accuracy estimation.

A version's served probabilities are usually over-confident. At build time a temperature ``T`` is
fitted on held-out rows the version never trained on (temperature scaling: the probabilities
``p`` become ``softmax(log p / T)``, which minimises the negative log-likelihood of the held-out
labels). While serving, the mean calibrated top-class probability over recent requests estimates
the accuracy on them without any label (confidence-based performance estimation): if the model is
calibrated, each prediction is right with the probability it states.

It is wrong where calibration does not transfer: inputs of another domain that the model
classifies confidently and wrongly read as accurate, and a shift in the label mix towards
classes that are easier or harder than average moves the true accuracy more than the estimate.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

# The record lives with the other meta.json types; re-exported for the fitting code's callers.
from service.domain.versions import Calibration as Calibration

FloatArray = npt.NDArray[np.floating[Any]]
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0
_EPS = 1e-12


def calibrated(probabilities: FloatArray, temperature: float) -> npt.NDArray[np.float64]:
    """``softmax(log p / T)`` row by row."""
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float64)


def fit_temperature(probabilities: FloatArray, labels: npt.NDArray[np.integer[Any]]) -> float:
    """The temperature that minimises the held-out negative log-likelihood (1.0 without rows)."""
    if len(labels) == 0:
        return 1.0
    labels = np.asarray(labels, dtype=np.int64)

    def nll(log_t: float) -> float:
        p = calibrated(probabilities, math.exp(log_t))
        return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], _EPS, 1.0))))

    # Golden-section search on log T: the NLL is unimodal in T for temperature scaling.
    lo, hi = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return round(math.exp((lo + hi) / 2), 4)


def calibrate(
    probabilities: FloatArray, labels: npt.NDArray[np.integer[Any]], source: str
) -> Calibration:
    """Fit the temperature on held-out rows and record it with their accuracy."""
    labels = np.asarray(labels, dtype=np.int64)
    rows = len(labels)
    accuracy = (
        float(np.mean(np.asarray(probabilities).argmax(axis=1) == labels)) if rows else math.nan
    )
    return Calibration(fit_temperature(probabilities, labels), rows, round(accuracy, 4), source)


def estimated_accuracy(probabilities: FloatArray, temperature: float) -> float:
    """The mean calibrated top-class probability: the expected accuracy on these rows."""
    if len(probabilities) == 0:
        return math.nan
    return float(calibrated(probabilities, temperature).max(axis=1).mean())
