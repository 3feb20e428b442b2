"""Cross-cutting concerns of every RPC: error → status mapping, metrics and logging.

Servicers stay thin: they raise :mod:`service.errors` kinds and this interceptor turns them into
statuses with the caller-facing message. Unexpected exceptions are logged with their traceback
and answered INTERNAL with a generic message. Unary calls and server-streaming calls written as
async generators are covered; other handlers pass through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from service.api.status import public_message, status_for
from service.errors import LoopserveError
from service.metrics import Metrics

log = logging.getLogger("service.api")
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
UNKNOWN_MODEL = "_unknown"

Behavior = Callable[[Any, aio.ServicerContext], Awaitable[Any]]
StreamBehavior = Callable[[Any, aio.ServicerContext], AsyncGenerator[Any, None]]


class ObservabilityInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, metrics: Metrics, served_models: Callable[[], list[str]]) -> None:
        self._metrics = metrics
        self._served_models = served_models
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = details.method
        cached = self._wrapped.get(method)
        if cached is not None:
            return cached
        handler = await continuation(details)
        if handler is None:
            return handler
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                self._wrap(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            wrapped = grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        else:
            return handler
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, method: str, behavior: Behavior) -> Behavior:
        is_infer = method == MODEL_INFER

        async def observed(request: Any, context: aio.ServicerContext) -> Any:
            started = time.perf_counter()
            model = self._model_label(request) if is_infer else ""
            if is_infer:
                self._metrics.in_flight.labels(model).inc()
            recorded = False

            def record(code: grpc.StatusCode, version: str = "") -> None:
                # Before the status goes out: abort() sends it at once, and a client that scrapes
                # metrics right after its call must see that call counted.
                nonlocal recorded
                recorded = True
                self._metrics.grpc_requests.labels(method, code.name).inc()
                if is_infer:
                    self._metrics.in_flight.labels(model).dec()
                    self._metrics.requests.labels(model, version, code.name).inc()
                    self._metrics.request_latency.labels(model).observe(
                        time.perf_counter() - started
                    )

            try:
                response = await behavior(request, context)
                record(grpc.StatusCode.OK, getattr(response, "model_version", ""))
                return response
            except LoopserveError as exc:
                code = status_for(exc)
                log.info("%s -> %s: %s", method, code.name, exc)
                record(code)
                await context.abort(code, public_message(exc))
            except aio.AbortError:
                if not recorded:
                    record(context.code() or grpc.StatusCode.UNKNOWN)
                raise
            except asyncio.CancelledError:
                record(grpc.StatusCode.CANCELLED)
                raise
            except Exception as exc:
                log.exception("%s failed", method)
                record(grpc.StatusCode.INTERNAL)
                await context.abort(grpc.StatusCode.INTERNAL, public_message(exc))

        return observed

    def _wrap_stream(self, method: str, behavior: StreamBehavior) -> StreamBehavior:
        """The same mapping for a server stream: an error may come before or after some messages."""

        def record(code: grpc.StatusCode) -> None:
            self._metrics.grpc_requests.labels(method, code.name).inc()

        async def observed(request: Any, context: aio.ServicerContext) -> AsyncGenerator[Any, None]:
            try:
                # aclosing: a cancelled call closes the servicer's generator (and what it
                # subscribed to) at once, not when the garbage collector gets to it.
                async with contextlib.aclosing(behavior(request, context)) as responses:
                    async for response in responses:
                        yield response
            except LoopserveError as exc:
                code = status_for(exc)
                log.info("%s -> %s: %s", method, code.name, exc)
                record(code)
                await context.abort(code, public_message(exc))
            except aio.AbortError:
                record(context.code() or grpc.StatusCode.UNKNOWN)
                raise
            except (asyncio.CancelledError, GeneratorExit):
                record(grpc.StatusCode.CANCELLED)
                raise
            except Exception as exc:
                log.exception("%s failed", method)
                record(grpc.StatusCode.INTERNAL)
                await context.abort(grpc.StatusCode.INTERNAL, public_message(exc))
            else:
                record(grpc.StatusCode.OK)

        return observed

    def _model_label(self, request: Any) -> str:
        name = getattr(request, "model_name", "")
        # Only served names become label values, so callers cannot blow up metric cardinality.
        return name if name in self._served_models() else UNKNOWN_MODEL
