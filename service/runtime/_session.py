"""One loaded model version: its task's preprocessor + an ONNX Runtime session + labels.

A version that stops serving is retired: its session (weights and buffers) is dropped as soon as
no batch runs on it, and the freed heap goes back to the system. :func:`live_sessions` lists the
sessions still alive in this process, whoever holds their versions.

onnxruntime is imported when a version is opened, not with this module (see ``_providers``).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from service.errors import Unavailable
from service.memory import return_free_memory
from service.runtime._cpus import available_cpus
from service.runtime._preprocess import Preprocessor
from service.runtime._providers import CUDA, preload_cuda_libraries, select_providers

if TYPE_CHECKING:
    import onnxruntime as ort

FloatArray = npt.NDArray[np.float32]
OUTPUTS = ["probabilities", "embedding"]
# Every session a LoadedVersion opened and that is not freed yet: (model, version).
_LIVE: weakref.WeakKeyDictionary[ort.InferenceSession, tuple[str, int]] = (
    weakref.WeakKeyDictionary()
)


def live_sessions() -> list[tuple[str, int]]:
    """(model, version) of each ONNX Runtime session of this process not yet freed."""
    return sorted(_LIVE.values())


@dataclass(frozen=True)
class Prediction:
    """Per-item outputs of one batch, in the order the items were given."""

    probabilities: FloatArray
    embedding: FloatArray


@dataclass(frozen=True)
class SessionOptions:
    intra_op_threads: int = 0
    providers: str = "auto"
    thread_spinning: bool = True
    spin_duration_us: int = 0  # 0: ONNX Runtime's own default


class LoadedVersion:
    """A model version ready to run. Thread-safe: ORT sessions allow concurrent ``run`` calls."""

    def __init__(
        self,
        model: str,
        version: int,
        onnx_path: Path,
        preprocessor: Preprocessor,
        labels: list[str],
        options: SessionOptions,
    ) -> None:
        self.model = model
        self.version = version
        self.labels = labels
        self.preprocessor = preprocessor
        self.providers = select_providers(options.providers)
        if CUDA in self.providers:
            preload_cuda_libraries()
        import onnxruntime as ort

        session = ort.InferenceSession(
            str(onnx_path), _session_options(options), providers=self.providers
        )
        _LIVE[session] = (model, version)
        self._session: ort.InferenceSession | None = session
        self.embedding_dim = int(session.get_outputs()[1].shape[1])
        self._active = 0
        self._retired = False
        self._idle = threading.Condition()

    def predict(self, items: Sequence[Any]) -> Prediction:
        session = self._session
        if session is None:
            raise Unavailable(f"model {self.model!r} version {self.version} no longer serves")
        groups = self.preprocessor.groups(items)
        if len(groups) == 1 and groups[0].positions == list(range(len(items))):
            # One group in item order (a lone text, images of one size): its outputs as they are.
            probs, emb = session.run(OUTPUTS, groups[0].feeds)
            return Prediction(np.asarray(probs, np.float32), np.asarray(emb, np.float32))
        probabilities = np.empty((len(items), len(self.labels)), dtype=np.float32)
        embedding = np.empty((len(items), self.embedding_dim), dtype=np.float32)
        for group in groups:
            probs, emb = session.run(OUTPUTS, group.feeds)
            probabilities[group.positions] = probs
            embedding[group.positions] = emb
        return Prediction(probabilities, embedding)

    def warm_up(self) -> None:
        self.predict(self.preprocessor.warmup_items())

    def acquire(self) -> None:
        with self._idle:
            self._active += 1

    def release(self) -> None:
        with self._idle:
            self._active -= 1
            if self._active:
                return
            self._idle.notify_all()
            retired = self._retired
        if retired:  # the last batch of a version that a swap could not wait for
            self._close()

    def wait_idle(self, timeout: float) -> bool:
        """Block until no batch runs on this version (used to drain it after a swap)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout=timeout)

    def retire(self) -> None:
        """This version serves no more: free its session now if no batch runs on it, else when
        the last one ends."""
        with self._idle:
            self._retired = True
            if self._active:
                return
        self._close()

    def _close(self) -> None:
        with self._idle:
            session, self._session = self._session, None
        if session is not None:
            del session  # the only reference: ONNX Runtime frees the weights and buffers here
            return_free_memory()


def _session_options(options: SessionOptions) -> ort.SessionOptions:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = options.intra_op_threads or available_cpus()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # Spinning (ONNX Runtime's default) measured faster for the server on 2 dedicated cores;
    # turn it off when the cores are shared with other busy processes.
    so.add_session_config_entry(
        "session.intra_op.allow_spinning", "1" if options.thread_spinning else "0"
    )
    if options.thread_spinning and options.spin_duration_us:
        # A worker that spins on between requests holds a core the event loop and the callers
        # need. (ONNX Runtime versions without this setting ignore it.)
        so.add_session_config_entry(
            "session.intra_op.spin_duration_us", str(options.spin_duration_us)
        )
    return so
