"""Transport-neutral request/response types shared by the api and the core."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

TensorData = npt.NDArray[Any] | list[bytes]


@dataclass(frozen=True)
class Tensor:
    """A named tensor. BYTES tensors hold a flat ``list[bytes]``; others a numpy array."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: TensorData
    parameters: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def from_array(
        name: str, array: npt.NDArray[Any], parameters: dict[str, Any] | None = None
    ) -> Tensor:
        datatype = NUMPY_TO_DATATYPE[np.dtype(array.dtype)]
        return Tensor(name, datatype, tuple(array.shape), array, parameters or {})


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class InferenceRequest:
    model: str
    version: str
    id: str
    inputs: list[Tensor]
    outputs: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InferenceResponse:
    model: str
    version: str
    id: str
    outputs: list[Tensor]


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerMetadata:
    name: str
    version: str
    extensions: list[str]


DATATYPE_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
NUMPY_TO_DATATYPE = {dtype: name for name, dtype in DATATYPE_TO_NUMPY.items()}
