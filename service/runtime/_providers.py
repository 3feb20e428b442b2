"""Which ONNX Runtime execution providers to ask for.

onnxruntime-gpu lists the CUDA provider even on machines without a GPU and logs an error when
it is requested there, so CUDA is requested only when a GPU device is actually visible.

onnxruntime is imported only when a provider list is chosen (a session is about to open): the
client commands and ``loopserve --help`` import this package through the task registry and never
need it, and importing it maps a large native library (70 ms or more of wall time).
"""

from __future__ import annotations

import contextlib
import glob
import os

from service.errors import ConfigError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def gpu_visible() -> bool:
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def select_providers(preference: str) -> list[str]:
    """``auto``: CUDA when a GPU is visible and the build supports it, else CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    cuda_possible = CUDA in available and gpu_visible()
    if preference == "cpu":
        return [CPU]
    if preference == "cuda":
        if not cuda_possible:
            raise ConfigError("providers = 'cuda' but no GPU is visible or onnxruntime lacks CUDA")
        return [CUDA, CPU]
    return [CUDA, CPU] if cuda_possible else [CPU]


def preload_cuda_libraries() -> None:
    """Let onnxruntime find CUDA/cuDNN from the torch or nvidia-* wheels when they are installed."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        with contextlib.suppress(Exception):  # best effort: a system CUDA install works without it
            preload()
