"""The drift detectors, each keeping the :class:`~service.drift.Detector` contract.

The windowed tests (KS on embeddings and confidence, Chi-square on labels) compute alibi-detect
0.11.4's statistics on scipy alone (``_univariate``). The online embedding detectors (MMD, LSDD)
are adapters over alibi-detect and its PyTorch backend, imported inside :meth:`fit`, so a worker
without them never loads alibi-detect. alibi-detect is not installed on Python 3.13 (it needs
numpy < 2 and scipy < 1.12): a model definition asking for them there is refused when it is read
(``service.config``), before any worker starts. These detectors run in the drift worker process,
never in the serving process.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
import numpy.typing as npt

from service.config import DriftRecipe
from service.drift._contract import Detector
from service.drift._reduce import Projection
from service.drift._types import FloatArray, Observations, WindowTest
from service.drift._univariate import category_counts, chi_square, ks_distances, ks_p_values

_LSDD_CLOSURES = ("_normalize", "_unnormalize")


class _Readings:
    """The read-only side of the contract, shared by the detectors."""

    _cd: Any = None  # what fit() made: alibi-detect's detector, or the windowed test's reference
    _statistic = math.nan
    _threshold = math.nan
    _detected = False
    _seen = 0
    _reference_size = 0

    @property
    def fitted(self) -> bool:
        return self._cd is not None

    @property
    def statistic(self) -> float:
        return self._statistic

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def drift_detected(self) -> bool:
        return self._detected

    @property
    def samples_seen(self) -> int:
        return self._seen

    @property
    def reference_size(self) -> int:
        return self._reference_size


class EmbeddingDetector(_Readings):
    """Online MMD or LSDD (alibi-detect) on pooled embeddings reduced by a PCA fitted on the reference.

    The threshold is configured for an expected run time ``ert`` (samples between false alarms) on
    a sliding window of ``window_size`` samples. It gives no p-value, so the false-alarm budget
    cannot cover it: it is a diagnostic signal, outside the model-level alarm.
    """

    name = "embedding"
    budgeted = False
    tests: list[WindowTest] = []  # noqa: RUF012  (never filled: no window p-values)
    effect = math.nan

    def __init__(
        self, method: str, dims: int, window_size: int, ert: float, n_bootstraps: int, seed: int
    ) -> None:
        if method not in ("mmd", "lsdd"):
            raise ValueError(f"unknown embedding method {method!r}")
        self.method = method
        self._dims = dims
        self._window_size = window_size
        self._ert = ert
        self._n_bootstraps = n_bootstraps
        self._seed = seed
        self.projection: Projection | None = None
        self._cd: Any = None
        self._reference_size = 0
        self._statistic = math.nan
        self._threshold = math.nan
        self._detected = False
        self._seen = 0

    def fit(self, reference: Observations) -> None:
        from alibi_detect.cd import LSDDDriftOnline, MMDDriftOnline

        # alibi-detect's own seeding (torch, numpy, random): the bootstrap permutations come from
        # torch, which only training code (service.training, service.tasks.*.training) imports
        # directly. It sets the global generators of the drift worker's process, which nothing
        # else there draws from.
        from alibi_detect.utils._random import set_seed

        if len(reference) < 2 * self._window_size:
            raise ValueError(
                f"the embedding reference needs at least {2 * self._window_size} rows "
                f"(twice window_size), got {len(reference)}"
            )
        self.projection = Projection.fit(reference.embeddings, self._dims)
        x_ref = self.projection.transform(reference.embeddings)
        cls = MMDDriftOnline if self.method == "mmd" else LSDDDriftOnline
        set_seed(self._seed)
        self._cd = cls(
            x_ref,
            ert=self._ert,
            window_size=self._window_size,
            backend="pytorch",
            n_bootstraps=self._n_bootstraps,
            device="cpu",
            verbose=False,
        )
        self._reference_size = len(reference)
        self._ref_mean = x_ref.mean(axis=0)
        self._ref_std = x_ref.std(axis=0, ddof=1)

    # alibi-detect's LSDD keeps its input normalisation as closures, which do not pickle: they are
    # left out of the pickle and rebuilt from the reference's mean and standard deviation.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        backend = getattr(self._cd, "_detector", None)
        closures = {
            name: backend.__dict__.pop(name)
            for name in _LSDD_CLOSURES
            if backend is not None and name in backend.__dict__
        }
        try:
            state["_cd"] = pickle.dumps(self._cd, protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            if backend is not None:
                backend.__dict__.update(closures)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cd = pickle.loads(state["_cd"])
        backend = getattr(self._cd, "_detector", None)
        if self.method == "lsdd" and backend is not None:
            # Tensors made like the backend's own (only its scoring normalisation is needed).
            mean = backend.kernel_centers.new_tensor(self._ref_mean)
            std = backend.kernel_centers.new_tensor(self._ref_std) + 1e-12
            backend._normalize = lambda x: (x - mean) / std

    def update(self, batch: Observations) -> None:
        if self._cd is None or self.projection is None:
            raise RuntimeError("fit() the detector before update()")
        detected = False
        for row in self.projection.transform(batch.embeddings):
            data = self._cd.predict(row)["data"]
            self._statistic = float(data["test_stat"])
            self._threshold = float(data["threshold"])
            detected = detected or bool(data["is_drift"])
        self._seen += len(batch)
        self._detected = detected


class WindowedTest(_Readings):
    """A two-sample test of tumbling windows of ``window_size`` observations against the
    reference.

    Each completed window leaves a :class:`WindowTest` (p-value and effect size) in ``tests``;
    the worker's alarm rules and the false-alarm budget (see ``_budget``) act on those. The
    statistic is reported as -log10(p-value) and the threshold as -log10(``alpha``), so that, as
    for every detector, drift means ``statistic > threshold``; the worker sets ``alpha`` from the
    budget before each update.
    """

    name = ""
    method = ""
    budgeted = True

    def __init__(self, window_size: int, alpha: float = 0.05) -> None:
        self._window_size = window_size
        self.alpha = alpha
        self._cd: Any = None
        self._window: list[Observations] = []
        self._buffered = 0
        self._reference_size = 0
        self._statistic = math.nan
        self._effect = math.nan
        self._detected = False
        self._seen = 0
        self.tests: list[WindowTest] = []

    @property
    def effect(self) -> float:
        return self._effect

    @property
    def window_size(self) -> int:
        return self._window_size

    def _values(self, batch: Observations) -> npt.NDArray[Any]:
        raise NotImplementedError

    def _build(self, x_ref: npt.NDArray[Any]) -> Any:
        raise NotImplementedError

    def _measure(self, x: npt.NDArray[Any]) -> WindowTest:
        raise NotImplementedError

    def fit(self, reference: Observations) -> None:
        if len(reference) < self._window_size:
            raise ValueError(
                f"the {self.name} reference needs at least {self._window_size} rows, "
                f"got {len(reference)}"
            )
        self._cd = self._build(self._values(reference))
        self._reference_size = len(reference)

    def update(self, batch: Observations) -> None:
        if self._cd is None:
            raise RuntimeError("fit() the detector before update()")
        self._detected = False
        self.tests = []
        self._window.append(batch)
        self._buffered += len(batch)
        self._seen += len(batch)
        while self._buffered >= self._window_size:
            pending = Observations.concat(self._window)
            window = _rows(pending, 0, self._window_size)
            rest = _rows(pending, self._window_size, len(pending))
            self._window = [rest] if len(rest) else []
            self._buffered = len(rest)
            test = self._measure(self._values(window))
            self.tests.append(test)
            self._statistic = -math.log10(max(test.p_value, 1e-300))
            self._effect = test.effect
            self._detected = self._detected or test.p_value < self.alpha

    @property
    def threshold(self) -> float:
        return -math.log10(self.alpha)


class _KSTest(WindowedTest):
    """Kolmogorov-Smirnov per feature, Bonferroni-corrected; the effect is the largest KS
    distance (the largest gap between the cumulative distributions, in [0, 1])."""

    def _build(self, x_ref: npt.NDArray[Any]) -> Any:
        return np.sort(x_ref.reshape(len(x_ref), -1), axis=0)

    def _measure(self, x: npt.NDArray[Any]) -> WindowTest:
        distances = ks_distances(self._cd, x)
        largest = distances.max()
        smallest_p = float(ks_p_values(largest, len(self._cd), len(x))[0])
        p_value = min(1.0, smallest_p * len(distances))
        return WindowTest(p_value, float(np.float32(largest)), len(x))


class EmbeddingKSDetector(_KSTest):
    """KS tests on the pooled embeddings after a PCA fitted on the reference (``dims`` components,
    Bonferroni over them)."""

    name = "embedding"
    method = "ks"

    def __init__(self, dims: int, window_size: int, alpha: float = 0.05) -> None:
        super().__init__(window_size, alpha)
        self._dims = dims
        self.projection: Projection | None = None

    def fit(self, reference: Observations) -> None:
        self.projection = Projection.fit(reference.embeddings, self._dims)
        super().fit(reference)

    def _values(self, batch: Observations) -> npt.NDArray[Any]:
        if self.projection is None:
            raise RuntimeError("fit() the detector before update()")
        return self.projection.transform(batch.embeddings)


class ConfidenceDetector(_KSTest):
    """Kolmogorov-Smirnov test on the top-class probability (the model's confidence)."""

    name = "confidence"
    method = "ks"

    def _values(self, batch: Observations) -> npt.NDArray[Any]:
        return batch.confidence.reshape(-1, 1).astype(np.float32)


class LabelDetector(WindowedTest):
    """Chi-square test on the counts of predicted labels; the effect is the bias-corrected
    Cramer's V of the window-versus-reference table (0: the same label mix, 1: disjoint)."""

    name = "labels"
    method = "chisquare"

    def _values(self, batch: Observations) -> npt.NDArray[Any]:
        return batch.predicted.reshape(-1, 1)

    def _build(self, x_ref: npt.NDArray[Any]) -> Any:
        return category_counts(x_ref)

    def _measure(self, x: npt.NDArray[Any]) -> WindowTest:
        p_value, chi2 = chi_square(self._cd, x)
        return WindowTest(p_value, _cramers_v(chi2, self._cd, x.ravel()), len(x))


def _cramers_v(chi2: float, ref_counts: npt.NDArray[Any], window: npt.NDArray[Any]) -> float:
    """Bias-corrected Cramer's V (Bergsma 2013) of a 2 x k table with chi-square ``chi2``."""
    size = max(len(ref_counts), int(window.max(initial=0)) + 1)
    both = np.bincount(window, minlength=size) + np.pad(ref_counts, (0, size - len(ref_counts)))
    k = int(np.count_nonzero(both))
    n = int(ref_counts.sum()) + len(window)
    if k < 2 or n < 2:
        return 0.0
    phi2 = max(0.0, chi2 / n - (k - 1) / (n - 1))
    k_corr = k - (k - 1) ** 2 / (n - 1)
    r_corr = 2 - 1 / (n - 1)
    return math.sqrt(phi2 / max(min(k_corr - 1, r_corr - 1), 1e-12))


def _rows(rows: Observations, start: int, stop: int) -> Observations:
    return Observations(rows.embeddings[start:stop], rows.probabilities[start:stop])


def build_detectors(recipe: DriftRecipe) -> dict[str, Detector]:
    """The unfitted detectors ``recipe`` asks for, by name."""
    detectors: dict[str, Detector] = {}
    for name in recipe.detectors:
        if name == "embedding" and recipe.embedding_method == "ks":
            detectors[name] = EmbeddingKSDetector(recipe.embedding_dims, recipe.window_size)
        elif name == "embedding":
            detectors[name] = EmbeddingDetector(
                recipe.embedding_method,
                recipe.embedding_dims,
                recipe.window_size,
                recipe.ert,
                recipe.n_bootstraps,
                recipe.seed,
            )
        elif name == "confidence":
            detectors[name] = ConfidenceDetector(recipe.test_window_size)
        elif name == "labels":
            detectors[name] = LabelDetector(recipe.test_window_size)
        else:
            raise ValueError(f"unknown drift detector {name!r}")
    return detectors


def reference_source(recipe: DriftRecipe, detector: str) -> str:
    return recipe.embedding_reference if detector == "embedding" else recipe.output_reference


def as_observations(embeddings: FloatArray, probabilities: FloatArray) -> Observations:
    return Observations(
        np.ascontiguousarray(embeddings, dtype=np.float32),
        np.ascontiguousarray(probabilities, dtype=np.float32),
    )
