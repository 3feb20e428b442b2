"""The inference core behind the Open Inference Protocol: health, metadata and ModelInfer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from service import __version__
from service.errors import NotFound, Unavailable, check_length, quote
from service.serving import ServedModel
from service.tasks import RequestLimits
from service.types import InferenceRequest, InferenceResponse, ModelMetadata, ServerMetadata


class InferenceService:
    def __init__(self, models: Mapping[str, ServedModel]) -> None:
        self._models = dict(models)
        self._draining = False
        self._in_flight = 0
        self._last_call = 0.0

    @property
    def model_names(self) -> list[str]:
        return list(self._models)

    def model(self, name: str) -> ServedModel:
        check_length("model name", name)
        try:
            return self._models[name]
        except KeyError:
            served = ", ".join(repr(n) for n in self._models) or "none"
            raise NotFound(f"unknown model {quote(name)}; this server serves {served}") from None

    def begin_drain(self) -> None:
        self._draining = True

    async def wait_idle(self, timeout: float, quiet: float = 0.2) -> bool:
        """Wait until every admitted request is answered and no call arrived for ``quiet`` seconds.

        The quiet period lets calls already on the wire reach a handler and be refused
        UNAVAILABLE (which clients retry) rather than be cancelled by the transport shutdown.
        Returns False when ``timeout`` passed first.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self._in_flight == 0 and time.monotonic() - self._last_call >= quiet:
                return True
            await asyncio.sleep(0.01)
        return self._in_flight == 0

    def _refuse_if_draining(self) -> None:
        if self._draining:
            raise Unavailable("server is shutting down; retry on another replica")

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return not self._draining and all(m.is_ready() for m in self._models.values())

    def model_ready(self, name: str, version: str) -> bool:
        return not self._draining and self.model(name).is_ready(version)

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(name="loopserve", version=__version__, extensions=[])

    def model_metadata(self, name: str, version: str) -> ModelMetadata:
        return self.model(name).metadata(version)

    def admit(self, name: str, version: str) -> RequestLimits:
        """Refuse early while draining or for an unknown model/version, before tensors are
        decoded; the model's request limits, which bound the decoding."""
        self._last_call = time.monotonic()
        self._refuse_if_draining()
        served = self.model(name)
        served.check_version(version)
        return served.inputs.limits

    async def infer(
        self, request: InferenceRequest, deadline: float | None = None
    ) -> InferenceResponse:
        """``deadline``: the caller's, in ``time.monotonic()`` seconds; a request still queued
        then is not run (DeadlineExceeded)."""
        self._last_call = time.monotonic()
        self._refuse_if_draining()
        self._in_flight += 1
        try:
            return await self.model(request.model).infer(request, deadline)
        finally:
            self._in_flight -= 1
