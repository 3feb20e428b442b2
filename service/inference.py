"""The inference core behind the Open Inference Protocol: health, metadata and ModelInfer."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from service import __version__
from service.errors import NotFound, Unavailable
from service.serving import ServedModel
from service.types import InferenceRequest, InferenceResponse, ModelMetadata, ServerMetadata


class InferenceService:
    def __init__(self, models: Mapping[str, ServedModel]) -> None:
        self._models = dict(models)
        self._draining = False
        self._in_flight = 0

    @property
    def model_names(self) -> list[str]:
        return list(self._models)

    def model(self, name: str) -> ServedModel:
        try:
            return self._models[name]
        except KeyError:
            served = ", ".join(repr(n) for n in self._models) or "none"
            raise NotFound(f"unknown model {name!r}; this server serves {served}") from None

    def begin_drain(self) -> None:
        self._draining = True

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until every admitted request has been answered (True) or ``timeout`` passes."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._in_flight and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        return self._in_flight == 0

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

    def require_model(self, name: str, version: str) -> None:
        """Fail fast on an unknown model or version, before the request's tensors are decoded."""
        self.model(name).check_version(version)

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        if self._draining:
            raise Unavailable("server is shutting down; retry on another replica")
        self._in_flight += 1
        try:
            return await self.model(request.model).infer(request)
        finally:
            self._in_flight -= 1
