"""PCA fitted on a reference: the embedding detector's dimension reduction and the atypicality score."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.drift._types import FloatArray


@dataclass(frozen=True)
class Projection:
    mean: FloatArray  # (d,)
    components: FloatArray  # (k, d)
    scale: FloatArray  # (k,) standard deviation of the reference along each component

    @classmethod
    def fit(cls, reference: FloatArray, dims: int) -> Projection:
        x = np.asarray(reference, dtype=np.float64)
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        components = vt[: min(dims, vt.shape[0])]
        projected = (x - mean) @ components.T
        scale = projected.std(axis=0)
        scale = np.where(scale > 1e-8, scale, 1.0)
        return cls(mean.astype(np.float32), components.astype(np.float32), scale.astype(np.float32))

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    def transform(self, x: FloatArray) -> FloatArray:
        projected = (np.asarray(x, dtype=np.float32) - self.mean) @ self.components.T
        return projected.astype(np.float32)

    def atypicality(self, x: FloatArray) -> FloatArray:
        """Mean squared whitened coordinate: about 1 for reference-like inputs, larger when atypical."""
        whitened = self.transform(x) / self.scale
        return np.asarray((whitened**2).mean(axis=1), dtype=np.float32)
