"""PCA fitted on a reference: the embedding detector's dimension reduction and the atypicality score."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.drift._types import FloatArray

NEIGHBOURS = 5


@dataclass(frozen=True)
class Projection:
    mean: FloatArray  # (d,)
    components: FloatArray  # (k, d)
    scale: FloatArray  # (k,) standard deviation of the reference along each component
    reference: FloatArray  # (n, k) the reference, projected and whitened
    typical_distance: float  # median distance of a reference point to its 5th neighbour

    @classmethod
    def fit(cls, reference: FloatArray, dims: int) -> Projection:
        x = np.asarray(reference, dtype=np.float64)
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        components = vt[: min(dims, vt.shape[0])]
        projected = (x - mean) @ components.T
        scale = projected.std(axis=0)
        scale = np.where(scale > 1e-8, scale, 1.0)
        whitened = (projected / scale).astype(np.float32)
        distances = _neighbour_distance(whitened, whitened, skip_self=True)
        return cls(
            mean.astype(np.float32),
            components.astype(np.float32),
            scale.astype(np.float32),
            whitened,
            max(float(np.median(distances)), 1e-8),
        )

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    def transform(self, x: FloatArray) -> FloatArray:
        projected = (np.asarray(x, dtype=np.float32) - self.mean) @ self.components.T
        return projected.astype(np.float32)

    def atypicality(self, x: FloatArray) -> FloatArray:
        """Distance to the 5th-nearest reference point (whitened PCA space), squared and relative
        to the same distance within the reference: about 1 for inputs like the reference, larger
        for inputs in regions the reference does not cover (even near its centre)."""
        whitened = self.transform(x) / self.scale
        distances = _neighbour_distance(whitened, self.reference, skip_self=False)
        return np.asarray((distances / self.typical_distance) ** 2, dtype=np.float32)


def _neighbour_distance(queries: FloatArray, points: FloatArray, skip_self: bool) -> FloatArray:
    k = min(NEIGHBOURS + int(skip_self), len(points)) - 1
    squared = (
        (queries**2).sum(axis=1)[:, None]
        - 2 * queries @ points.T
        + (points**2).sum(axis=1)[None, :]
    )
    kth = np.partition(np.maximum(squared, 0.0), k, axis=1)[:, k]
    return np.asarray(np.sqrt(kth), dtype=np.float32)
