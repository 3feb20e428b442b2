"""Adapters over alibi-detect 0.11.4 that keep the :class:`~service.drift.Detector` contract.

alibi-detect (and, for the online embedding detectors, its PyTorch backend) is imported lazily,
inside :meth:`fit`, so a server with drift monitoring off never loads it. These adapters run in the
drift worker process, never in the serving process.
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
from service.drift._types import FloatArray, Observations

_LSDD_CLOSURES = ("_normalize", "_unnormalize")


class _Readings:
    """The read-only side of the contract, shared by the adapters."""

    _cd: Any = None
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
    a sliding window of ``window_size`` samples.
    """

    name = "embedding"

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
        # torch, which only service.training imports directly. It sets the global generators of
        # the drift worker's process, which nothing else there draws from.
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


class _WindowedTest(_Readings):
    """A two-sample test (alibi-detect) on tumbling windows of ``window_size`` observations.

    The significance level per window is ``window_size / ert``, so in-distribution traffic raises
    a false alarm about once every ``ert`` samples, as for the online detector. The statistic is
    reported as -log10(p-value) and the threshold as -log10(significance level), so that, as for
    every detector, drift means ``statistic > threshold``.
    """

    name = ""
    method = ""

    def __init__(self, window_size: int, ert: float) -> None:
        self._window_size = window_size
        self._p_val = min(window_size / ert, 0.5)
        self._cd: Any = None
        self._window: list[Observations] = []
        self._buffered = 0
        self._reference_size = 0
        self._statistic = math.nan
        self._detected = False
        self._seen = 0

    def _values(self, batch: Observations) -> npt.NDArray[Any]:
        raise NotImplementedError

    def _build(self, x_ref: npt.NDArray[Any], p_val: float, reference: Observations) -> Any:
        raise NotImplementedError

    def fit(self, reference: Observations) -> None:
        if len(reference) < self._window_size:
            raise ValueError(
                f"the {self.name} reference needs at least {self._window_size} rows, "
                f"got {len(reference)}"
            )
        self._cd = self._build(self._values(reference), self._p_val, reference)
        self._reference_size = len(reference)

    def update(self, batch: Observations) -> None:
        if self._cd is None:
            raise RuntimeError("fit() the detector before update()")
        self._detected = False
        self._window.append(batch)
        self._buffered += len(batch)
        self._seen += len(batch)
        while self._buffered >= self._window_size:
            pending = Observations.concat(self._window)
            window = Observations(
                pending.embeddings[: self._window_size], pending.probabilities[: self._window_size]
            )
            rest = Observations(
                pending.embeddings[self._window_size :], pending.probabilities[self._window_size :]
            )
            self._window = [rest] if len(rest) else []
            self._buffered = len(rest)
            self._test(window)

    def _test(self, window: Observations) -> None:
        data = self._cd.predict(self._values(window))["data"]
        p_value = float(np.min(data["p_val"]))
        self._statistic = -math.log10(max(p_value, 1e-300))
        self._detected = self._detected or p_value < self._p_val

    @property
    def threshold(self) -> float:
        return -math.log10(self._p_val)


class ConfidenceDetector(_WindowedTest):
    """Kolmogorov-Smirnov test on the top-class probability (the model's confidence)."""

    name = "confidence"
    method = "ks"

    def _values(self, batch: Observations) -> npt.NDArray[Any]:
        return batch.confidence.reshape(-1, 1).astype(np.float32)

    def _build(self, x_ref: npt.NDArray[Any], p_val: float, reference: Observations) -> Any:
        from alibi_detect.cd import KSDrift

        return KSDrift(x_ref, p_val=p_val)


class LabelDetector(_WindowedTest):
    """Chi-square test on the counts of predicted labels."""

    name = "labels"
    method = "chisquare"

    def _values(self, batch: Observations) -> npt.NDArray[Any]:
        return batch.predicted.reshape(-1, 1)

    def _build(self, x_ref: npt.NDArray[Any], p_val: float, reference: Observations) -> Any:
        from alibi_detect.cd import ChiSquareDrift

        # Categories are taken from the reference and each window: a label absent from both
        # would put a zero expected count in the contingency table, which the test refuses.
        return ChiSquareDrift(x_ref, p_val=p_val)


def build_detectors(recipe: DriftRecipe) -> dict[str, Detector]:
    """The unfitted detectors ``recipe`` asks for, by name."""
    detectors: dict[str, Detector] = {}
    for name in recipe.detectors:
        if name == "embedding":
            detectors[name] = EmbeddingDetector(
                recipe.embedding_method,
                recipe.embedding_dims,
                recipe.window_size,
                recipe.ert,
                recipe.n_bootstraps,
                recipe.seed,
            )
        elif name == "confidence":
            detectors[name] = ConfidenceDetector(recipe.test_window_size, recipe.ert)
        elif name == "labels":
            detectors[name] = LabelDetector(recipe.test_window_size, recipe.ert)
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
