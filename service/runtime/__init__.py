"""Serving on ONNX Runtime: sessions, tokenization, the hot-swap slot and the dynamic batcher.

Never imports torch.
"""

from service.runtime._batcher import Batcher, BatchingOptions, BatchResult
from service.runtime._cpus import available_cpus
from service.runtime._providers import gpu_visible, select_providers
from service.runtime._session import LoadedVersion, Prediction, SessionOptions
from service.runtime._slot import ModelSlot

__all__ = [
    "BatchResult",
    "Batcher",
    "BatchingOptions",
    "LoadedVersion",
    "ModelSlot",
    "Prediction",
    "SessionOptions",
    "available_cpus",
    "gpu_visible",
    "select_providers",
]
