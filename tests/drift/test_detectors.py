"""Contract tests: every drift detector keeps the same small contract."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from service.config import DriftRecipe
from service.drift import (
    ConfidenceDetector,
    Detector,
    EmbeddingDetector,
    EmbeddingKSDetector,
    LabelDetector,
    Observations,
    build_detectors,
)

DIM, LABELS = 16, 4


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The worker process runs torch on one thread (set before torch loads); tests that run the
    detectors in this process, where torch is already loaded, do the same."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def stream(n: int, seed: int, shifted: bool = False) -> Observations:
    """In distribution: uniform labels, embeddings around per-label centroids, confident outputs.
    Shifted: one label dominates, embeddings move off the centroids, outputs are unsure."""
    rng = np.random.default_rng(seed)
    centroids = np.random.default_rng(99).normal(size=(LABELS, DIM)) * 2
    labels = rng.choice(LABELS, size=n, p=[0.85, 0.05, 0.05, 0.05] if shifted else None)
    embeddings = centroids[labels] + rng.normal(size=(n, DIM))
    if shifted:
        embeddings += 1.5
    logits = rng.normal(size=(n, LABELS)) * 0.5
    logits[np.arange(n), labels] += 1.0 if shifted else 4.0
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Observations(embeddings.astype(np.float32), probabilities.astype(np.float32))


WINDOW = 20

FACTORIES: dict[str, Callable[[], Detector]] = {
    "mmd": lambda: EmbeddingDetector("mmd", 8, WINDOW, ert=500, n_bootstraps=600, seed=0),
    "lsdd": lambda: EmbeddingDetector("lsdd", 8, WINDOW, ert=500, n_bootstraps=600, seed=0),
    "embedding-ks": lambda: EmbeddingKSDetector(8, WINDOW, alpha=0.001),
    "ks": lambda: ConfidenceDetector(WINDOW, alpha=0.001),
    "chisquare": lambda: LabelDetector(WINDOW, alpha=0.001),
}
WINDOWED = ("embedding-ks", "ks", "chisquare")


def make(name: str) -> Detector:
    """A new detector; the online ones fit through alibi-detect, which Python 3.13 goes without."""
    if name not in WINDOWED:
        pytest.importorskip("alibi_detect", reason="the online detectors need alibi-detect")
    return FACTORIES[name]()


@pytest.fixture(params=sorted(FACTORIES), ids=sorted(FACTORIES))
def fitted(request: pytest.FixtureRequest) -> Detector:
    detector = make(request.param)
    detector.fit(stream(200, seed=1))
    return detector


def feed(detector: Detector, observations: Observations, batch: int = 5) -> int:
    """Feed in batches; returns the number of samples fed until the first detection (or -1)."""
    for start in range(0, len(observations), batch):
        part = Observations(
            observations.embeddings[start : start + batch],
            observations.probabilities[start : start + batch],
        )
        detector.update(part)
        if detector.drift_detected:
            return start + len(part)
    return -1


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_update_before_fit_is_refused(name: str) -> None:
    detector = FACTORIES[name]()
    assert not detector.fitted
    with pytest.raises(RuntimeError, match="fit"):
        detector.update(stream(5, seed=2))


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_a_reference_smaller_than_needed_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="reference needs at least"):
        make(name).fit(stream(WINDOW - 1, seed=2))


def test_fit_records_the_reference(fitted: Detector) -> None:
    assert fitted.fitted
    assert fitted.reference_size == 200
    assert fitted.samples_seen == 0
    assert math.isnan(fitted.statistic)
    assert not fitted.drift_detected


def test_in_distribution_traffic_is_scored_without_drift(fitted: Detector) -> None:
    assert feed(fitted, stream(2 * WINDOW, seed=3)) == -1
    assert fitted.samples_seen == 2 * WINDOW
    assert math.isfinite(fitted.statistic) and math.isfinite(fitted.threshold)
    assert fitted.statistic <= fitted.threshold


def test_a_shift_is_detected_within_two_windows(fitted: Detector) -> None:
    feed(fitted, stream(WINDOW, seed=4))
    delay = feed(fitted, stream(4 * WINDOW, seed=5, shifted=True))
    assert 0 < delay <= 2 * WINDOW, f"{fitted.method} detected after {delay} samples"
    assert fitted.statistic > fitted.threshold


def test_a_fitted_detector_pickles_with_its_state(fitted: Detector) -> None:
    feed(fitted, stream(WINDOW + 3, seed=6))
    copy: Detector = pickle.loads(pickle.dumps(fitted))
    assert copy.fitted and copy.samples_seen == fitted.samples_seen
    batch = stream(WINDOW, seed=7, shifted=True)
    fitted.update(batch)
    copy.update(batch)
    assert copy.statistic == pytest.approx(fitted.statistic, rel=1e-5)
    assert copy.drift_detected == fitted.drift_detected


def test_build_detectors_follows_the_recipe() -> None:
    detectors = build_detectors(DriftRecipe(detectors=("labels", "embedding")))
    assert sorted(detectors) == ["embedding", "labels"]
    assert detectors["embedding"].method == "ks" and detectors["embedding"].budgeted
    online = build_detectors(DriftRecipe(embedding_method="mmd"))["embedding"]
    assert online.method == "mmd" and not online.budgeted
    assert build_detectors(DriftRecipe(detectors=(), embedding_method="lsdd")) == {}
    assert build_detectors(DriftRecipe(embedding_method="lsdd"))["embedding"].method == "lsdd"
    assert all(isinstance(d, Detector) for d in build_detectors(DriftRecipe()).values())


def test_label_counts_with_labels_missing_from_reference_and_window() -> None:
    reference = stream(200, seed=1)
    probabilities = reference.probabilities.copy()
    probabilities[:, 3] = 0.0  # label 3 is never predicted in the reference
    detector = LabelDetector(WINDOW, alpha=0.001)
    detector.fit(Observations(reference.embeddings, probabilities))
    window = stream(WINDOW, seed=2)
    only_first_two = window.probabilities.copy()
    only_first_two[:, 2:] = 0.0
    detector.update(Observations(window.embeddings, only_first_two))  # labels 2 and 3 absent
    assert math.isfinite(detector.statistic)
    detector.update(window)  # label 3 appears, unseen in the reference
    assert math.isfinite(detector.statistic) and detector.samples_seen == 2 * WINDOW


@pytest.mark.parametrize("name", WINDOWED)
def test_each_completed_window_leaves_its_p_value_and_effect(name: str) -> None:
    detector = FACTORIES[name]()
    detector.fit(stream(200, seed=1))
    assert detector.budgeted
    detector.update(stream(WINDOW - 1, seed=2))
    assert detector.tests == [] and math.isnan(detector.effect)
    detector.update(stream(WINDOW + 2, seed=3))  # completes two windows, starts a third
    assert [t.size for t in detector.tests] == [WINDOW, WINDOW]
    assert all(0 <= t.p_value <= 1 and 0 <= t.effect <= 1 for t in detector.tests)
    last = detector.tests[-1]
    assert detector.statistic == pytest.approx(-math.log10(last.p_value))
    assert detector.effect == last.effect


@pytest.mark.parametrize("name", WINDOWED)
def test_a_shift_has_a_larger_effect_than_no_shift(name: str) -> None:
    quiet, shifted = FACTORIES[name](), FACTORIES[name]()
    for detector in (quiet, shifted):
        detector.fit(stream(400, seed=1))
    quiet.update(stream(4 * WINDOW, seed=2))
    shifted.update(stream(4 * WINDOW, seed=2, shifted=True))
    assert min(t.effect for t in shifted.tests) > max(t.effect for t in quiet.tests)


def test_alpha_sets_the_threshold_and_the_detection() -> None:
    detector = ConfidenceDetector(WINDOW, alpha=0.01)
    detector.fit(stream(200, seed=1))
    assert detector.threshold == pytest.approx(2.0)
    detector.alpha = 1.0  # every window counts as drift
    detector.update(stream(WINDOW, seed=2))
    assert detector.drift_detected
