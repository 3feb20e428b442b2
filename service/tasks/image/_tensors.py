"""Already preprocessed images, as Triton, KServe and OpenVINO clients send them: UINT8
``[n, H, W, 3]`` RGB pixels (normalised here) or FP32 ``[n, 3, H, W]`` already normalised."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from service.errors import InvalidInput
from service.tasks.image._spec import ImageSpec


def preprocessed_batch(array: npt.NDArray[Any], spec: ImageSpec) -> npt.NDArray[np.float32]:
    """The model's FP32 ``[n, 3, size, size]`` input from a preprocessed tensor; InvalidInput
    for any other datatype or shape, or for non-finite values."""
    s = spec.size
    expected = f"send UINT8 [n,{s},{s},3] RGB pixels or FP32 [n,3,{s},{s}] normalised values"
    shape = "[" + ",".join(str(d) for d in array.shape) + "]"
    if array.dtype == np.uint8:
        if array.ndim != 4 or array.shape[1:] != (s, s, 3):
            raise InvalidInput(f"UINT8 image tensor has shape {shape}; {expected}")
        _check_batch(array)
        return spec.normalise(array)
    if array.dtype == np.float32:
        if array.ndim != 4 or array.shape[1:] != (3, s, s):
            raise InvalidInput(f"FP32 image tensor has shape {shape}; {expected}")
        _check_batch(array)
        if not np.isfinite(array).all():
            raise InvalidInput(f"FP32 image tensor holds NaN or infinite values; {expected}")
        return np.ascontiguousarray(array)
    raise InvalidInput(f"image tensor has datatype {array.dtype}; {expected}")


def _check_batch(array: npt.NDArray[Any]) -> None:
    if array.shape[0] == 0:
        raise InvalidInput("image tensor holds no images (batch size 0); send at least one")
