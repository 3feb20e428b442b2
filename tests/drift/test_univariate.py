"""The windowed tests on scipy give alibi-detect's results, and the drift worker's detectors load
neither alibi-detect nor what it drags in."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from service.drift._univariate import category_counts, chi_square, ks_per_feature

ALIBI_DETECT_MISSING = "alibi-detect, the reference these match, is not installed (Python 3.13)"


@pytest.mark.parametrize("features", [1, 24])
def test_ks_equals_alibi_detect(features: int) -> None:
    pytest.importorskip("alibi_detect", reason=ALIBI_DETECT_MISSING)
    from alibi_detect.cd import KSDrift

    rng = np.random.default_rng(features)
    reference = rng.normal(size=(1000, features)).astype(np.float32)
    for shift in (0.0, 0.3, 2.0):
        window = (rng.normal(size=(50, features)) + shift).astype(np.float32)
        expected = KSDrift(reference, p_val=0.05, correction="bonferroni").predict(window)["data"]
        p_values, distances = ks_per_feature(reference, window)
        np.testing.assert_array_equal(p_values, expected["p_val"])
        np.testing.assert_array_equal(distances, expected["distance"])


@pytest.mark.parametrize(
    ("reference_labels", "window_labels"),
    [
        (range(10), range(10)),  # the same categories
        (range(10), [0, 1, 2]),  # the window misses most
        ([0, 1, 2, 3], [2, 3, 7, 9]),  # the window has categories the reference lacks
    ],
)
def test_chi_square_equals_alibi_detect(
    reference_labels: range | list[int], window_labels: range | list[int]
) -> None:
    pytest.importorskip("alibi_detect", reason=ALIBI_DETECT_MISSING)
    from alibi_detect.cd import ChiSquareDrift

    rng = np.random.default_rng(0)
    reference = rng.choice(list(reference_labels), size=(1000, 1))
    window = rng.choice(list(window_labels), size=(200, 1))
    expected = ChiSquareDrift(reference, p_val=0.05).predict(window)["data"]
    p_value, statistic = chi_square(category_counts(reference), window)
    assert p_value == pytest.approx(float(expected["p_val"][0]), rel=1e-6, abs=1e-30)
    assert statistic == pytest.approx(float(expected["distance"][0]), rel=1e-6)


def test_the_default_detectors_fit_and_score_without_alibi_detect() -> None:
    """In a fresh interpreter, as the worker process: import, fit and score the default
    detectors, then list what was loaded."""
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        from service.config import DriftRecipe
        from service.drift._process import main  # the worker's entry point and its imports
        from service.drift import Observations, build_detectors

        rng = np.random.default_rng(0)
        def rows(n):
            probabilities = rng.dirichlet(np.ones(12), size=n).astype(np.float32)
            return Observations(rng.normal(size=(n, 32)).astype(np.float32), probabilities)
        for detector in build_detectors(DriftRecipe()).values():
            detector.fit(rows(1000))
            detector.update(rows(400))
            assert detector.tests
        print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(json.loads(done.stdout))
    unwanted = {
        "alibi_detect", "numba", "llvmlite", "sklearn", "transformers", "torch", "tensorflow",
        "onnxruntime", "prometheus_client", "psycopg", "grpc",
    }  # fmt: skip
    assert loaded & unwanted == set()
    assert "scipy" in loaded
