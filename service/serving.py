"""One served model: its registry, the hot-swap slot, the batcher, and its task's ModelInfer inputs."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Literal

from service import tasks
from service.config import ModelDefinition
from service.errors import NotFound, Unavailable, quote
from service.metrics import Metrics
from service.registry import Head, ModelRegistry, VersionInfo
from service.runtime import (
    Batcher,
    BatchingOptions,
    BatchResult,
    LoadedVersion,
    ModelResponseCache,
    ModelSlot,
    SessionOptions,
)
from service.types import InferenceRequest, InferenceResponse, ModelMetadata

log = logging.getLogger(__name__)
PLATFORM = "onnxruntime_onnx"
# (request id, model, version, predicted labels): lets delayed labels be scored.
PredictionHook = Callable[[str, str, int, list[str]], None]
# (model, request id, each item's payload for the labeling pool, batch result): drift monitoring.
# Must not block.
OutputObserver = Callable[[str, str, Sequence[str | bytes], BatchResult], None]


class ServedModel:
    def __init__(
        self,
        definition: ModelDefinition,
        registry: ModelRegistry,
        metrics: Metrics,
        on_predictions: PredictionHook | None = None,
    ) -> None:
        self.name = definition.name
        self.definition = definition
        self.registry = registry
        self._metrics = metrics
        self._queue_latency = metrics.queue_latency.labels(self.name)
        serving = definition.serving
        self.slot = ModelSlot(self.name)
        self.batcher = Batcher(
            self.slot,
            BatchingOptions(
                max_batch_size=serving.max_batch_size,
                max_queue_delay=serving.max_queue_delay_ms / 1000.0,
                max_queue_size=serving.max_queue_size,
            ),
            metrics,
        )
        self.task = tasks.get(definition.task)
        self.inputs = self.task.input_contract(definition)
        self.outputs = tasks.ClassifierOutputs()
        self._session_options = SessionOptions(
            serving.intra_op_threads,
            serving.providers,
            serving.thread_spinning,
            serving.thread_spin_us,
        )
        self._swap_lock = threading.Lock()
        self._cache = (
            ModelResponseCache(
                self.name,
                serving.cache_max_entries,
                serving.cache_max_bytes,
                metrics,
                hash_in_thread=self.inputs.decode_in_thread,
            )
            if serving.cache
            else None
        )
        self._on_predictions = on_predictions
        self._observers: list[OutputObserver] = []
        for outcome in ("ok", "failed"):  # so that rate() sees the first failure
            metrics.swaps.labels(self.name, outcome)

    def add_observer(self, observer: OutputObserver) -> None:
        self._observers.append(observer)

    @property
    def serving_version(self) -> LoadedVersion | None:
        return self.slot.current

    def start(self) -> None:
        """Load the version ``current`` points at and start batching."""
        info = self.registry.current()
        if info is None:
            raise Unavailable(
                f"model {self.name!r} has no version yet; build one with `loopserve init {self.name}`"
            )
        self._swap_in(info)
        self.batcher.start()

    def stop(self, timeout: float) -> None:
        self.batcher.stop(timeout)

    @property
    def loaded_version(self) -> int | None:
        loaded = self.slot.current
        return None if loaded is None else loaded.version

    def activate(
        self,
        version: int,
        expected: int | Literal[Head.AS_READ] | None = Head.AS_READ,
        job: str = "",
    ) -> LoadedVersion:
        """Load and warm ``version``, move the head to it (compare-and-set against ``expected``:
        :class:`~service.errors.Conflict` if the head moved), then swap it in. Blocking.
        ``job``: the job that made ``version``, whose data the move checks for purges."""
        info = self.registry.get(version)
        return self._swap_in(info, move_pointer=True, expected=expected, job=job)

    def follow(self, version: int) -> None:
        """Serve ``version``, which the head already names (another process moved it): check
        its files against the digest recorded at publish, load, warm and swap it in."""
        info = self.registry.get(version)
        if not self.registry.verify(info):
            raise Unavailable(
                f"model {self.name!r} version {version}: files do not match their digest "
                "(still being copied, or damaged)"
            )
        self._swap_in(info)

    def _swap_in(
        self,
        info: VersionInfo,
        move_pointer: bool = False,
        expected: int | Literal[Head.AS_READ] | None = Head.AS_READ,
        job: str = "",
    ) -> LoadedVersion:
        with self._swap_lock:
            started = time.perf_counter()
            loaded = self._load(info)
            if move_pointer:
                try:
                    self.registry.set_current(info.version, expected, job)
                except BaseException:
                    loaded.retire()  # not served: free it now, not when the traceback goes
                    raise
            previous = self.slot.swap(loaded)  # retires the previous version
            if self._cache is not None:
                self._cache.clear()  # answers of another version (its keys never match anyway)
            self._metrics.current_version.labels(self.name).set(info.version)
            self._metrics.version_created.labels(self.name).set(_created(info))
            if previous is not None:
                self._metrics.swaps.labels(self.name, "ok").inc()
            log.info(
                "model %s now serving version %d (%s, %s) after %.2fs",
                self.name, info.version, info.serving_file.name, loaded.providers[0],
                time.perf_counter() - started,
            )  # fmt: skip
            return loaded

    def _load(self, info: VersionInfo) -> LoadedVersion:
        """Open and warm ``info``'s session; counted as a failed swap if that fails."""
        loaded: LoadedVersion | None = None
        try:
            loaded = tasks.open_version(self.name, info, self._session_options)
            loaded.warm_up()
        except Exception:
            self._metrics.swaps.labels(self.name, "failed").inc()
            if loaded is not None:
                loaded.retire()
            raise
        return loaded

    async def infer(
        self, request: InferenceRequest, deadline: float | None = None
    ) -> InferenceResponse:
        loaded = self.check_version(request.version)
        wanted = self.outputs.requested_outputs(request.outputs)
        if self._cache is None:
            result, payloads = await self._run(request, deadline)
        else:
            key, cached = await self._cache.lookup(request.inputs, loaded.version)
            if cached is None:
                result, payloads = await self._run(request, deadline)
                if result.version == self.loaded_version:  # not an answer of a swapped-out one
                    self._cache.keep(key, result)
            else:
                # The labeling pool was offered these inputs when they were answered first.
                result, payloads = cached, [""] * len(cached.predicted)
        # Cached answers are logged too: a delayed label may name this request's id.
        if self._on_predictions is not None and request.id:
            self._on_predictions(request.id, self.name, result.version, result.predicted)
        for observer in self._observers:
            observer(self.name, request.id, payloads, result)
        return InferenceResponse(
            model=self.name,
            version=str(result.version),
            id=request.id,
            outputs=self.outputs.outputs(result, wanted),
        )

    async def _run(
        self, request: InferenceRequest, deadline: float | None
    ) -> tuple[BatchResult, Sequence[str | bytes]]:
        """Decode the request, run it in a batch; the answer and its items' payloads."""
        items = (
            await asyncio.to_thread(self.inputs.decode, request.inputs)
            if self.inputs.decode_in_thread
            else self.inputs.decode(request.inputs)
        )
        result = await self.batcher.infer(items, deadline)
        self._queue_latency.observe(result.queue_seconds)
        payloads = self.inputs.payloads(request.inputs, items) if self._observers else ()
        return result, payloads

    def is_ready(self, version: str = "") -> bool:
        loaded = self.slot.current
        return loaded is not None and version in ("", str(loaded.version))

    def metadata(self, version: str = "") -> ModelMetadata:
        loaded = self.check_version(version)
        return ModelMetadata(
            name=self.name,
            versions=[str(loaded.version)],
            platform=PLATFORM,
            inputs=self.inputs.input_specs(),
            outputs=self.outputs.output_specs(len(loaded.labels), loaded.embedding_dim),
            properties={
                "task": self.task.name,
                "labels": json.dumps(loaded.labels),
                **loaded.preprocessor.properties(),
                "providers": ",".join(loaded.providers),
            },
        )

    def check_version(self, version: str) -> LoadedVersion:
        loaded = self.slot.current
        if loaded is None:
            raise Unavailable(f"model {self.name!r} is loading; retry shortly")
        if version not in ("", str(loaded.version)):
            raise NotFound(
                f"model {self.name!r} version {quote(version, 20)} is not served; serving version "
                f"{loaded.version} (leave model_version empty for the current one)"
            )
        return loaded


def _created(info: VersionInfo) -> float:
    """The version's build time from meta.json (ISO 8601, UTC); its directory's mtime if absent."""
    created = info.meta.created
    if created:
        try:
            return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return info.path.stat().st_mtime
