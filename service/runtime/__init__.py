"""Serving on ONNX Runtime: sessions, the hot-swap slot and the dynamic batcher.

What an input is and how it becomes feeds is the task's (service.tasks); the runtime only runs them.

Never imports torch.
"""

from service.runtime._batcher import Batcher, BatchingOptions, BatchResult
from service.runtime._cache import ModelResponseCache, ResponseCache, input_key
from service.runtime._cpus import available_cpus
from service.runtime._preprocess import FeedGroup, Preprocessor, stacked
from service.runtime._providers import gpu_visible, select_providers
from service.runtime._session import LoadedVersion, Prediction, SessionOptions, live_sessions
from service.runtime._slot import ModelSlot

__all__ = [
    "BatchResult",
    "Batcher",
    "BatchingOptions",
    "FeedGroup",
    "LoadedVersion",
    "ModelResponseCache",
    "ModelSlot",
    "Prediction",
    "Preprocessor",
    "ResponseCache",
    "SessionOptions",
    "available_cpus",
    "gpu_visible",
    "input_key",
    "live_sessions",
    "select_providers",
    "stacked",
]
