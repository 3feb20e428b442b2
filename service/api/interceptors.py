"""Cross-cutting concerns of every RPC: error → status mapping, metrics and logging.

Servicers stay thin: they raise :mod:`service.errors` kinds and this interceptor turns them into
statuses with the caller-facing message. Unexpected exceptions are logged with their traceback
and answered INTERNAL with a generic message. Before a call runs, three things are refused here:
a caller that may not call the method (``admit``, from the call's metadata alone: its request is
never parsed, and an unknown method is refused like a known one), a request that is not a valid
protobuf (INVALID_ARGUMENT) and one whose deadline already passed (DEADLINE_EXCEEDED). Every
asynchronous handler is covered: unary ones, streams written as async generators and streams
written with ``context.write``.

Refusals are logged at WARNING, at most once a minute per peer (:mod:`service.api.log_limit`); a
full disk is counted and logged once per outage (:mod:`service.disk_full`).

This interceptor must be the outermost one: inner ones (authentication) raise
:mod:`service.errors` kinds and this one maps, logs and counts them like the servicers' errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from grpc import aio

from service.api.log_limit import PeerLogLimit
from service.api.status import MalformedRequest, public_message, status_for
from service.disk_full import DiskFullReporter
from service.errors import (
    DeadlineExceeded,
    LoopserveError,
    PermissionDenied,
    StorageFull,
    Unauthenticated,
    is_disk_full,
)
from service.metrics import Metrics

log = logging.getLogger("service.api")
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
WORTH_A_WARNING = (MalformedRequest, Unauthenticated, PermissionDenied)
UNKNOWN_MODEL = "_unknown"
# The method label of refused calls to methods this server does not have: the name is the
# caller's, and label values must not be.
UNKNOWN_METHOD = "_unknown"

Behavior = Callable[[Any, aio.ServicerContext], Awaitable[Any]]
StreamBehavior = Callable[[Any, aio.ServicerContext], AsyncGenerator[Any, None]]
Deserializer = Callable[[bytes], Any]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]]
Metadata = Sequence[tuple[str, str | bytes]]
# Raises Unauthenticated or PermissionDenied when the caller may not call the method.
Admit = Callable[[str, Metadata | None], object]

HANDLER_FACTORIES: dict[str, Callable[..., grpc.RpcMethodHandler]] = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def handler_kind(handler: grpc.RpcMethodHandler) -> tuple[str, Callable[..., Any]]:
    """Which of the four call shapes ``handler`` serves, and its behavior."""
    for kind in HANDLER_FACTORIES:
        behavior = getattr(handler, kind)
        if behavior is not None:
            return kind, behavior
    raise ValueError("a method handler without a behavior")


def rebuild(
    handler: grpc.RpcMethodHandler,
    kind: str,
    behavior: Callable[..., Any],
    request_deserializer: Deserializer | None = None,
) -> grpc.RpcMethodHandler:
    """``handler`` with another behavior (and optionally another request deserializer)."""
    return HANDLER_FACTORIES[kind](
        behavior,
        request_deserializer=request_deserializer or handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


@dataclass(frozen=True)
class Undecodable:
    """Stands in for a request whose bytes did not parse.

    grpc aio answers a deserializer's exception with UNKNOWN, the exception's class and an ERROR
    traceback in the log; handing the behavior this marker instead lets the interceptor answer
    INVALID_ARGUMENT, count the call and log one line.
    """

    message_type: str


def tolerant(deserializer: Deserializer | None) -> Deserializer | None:
    """``deserializer`` returning :class:`Undecodable` instead of raising."""
    if deserializer is None:
        return None
    owner = getattr(deserializer, "__self__", None)  # Message.FromString is bound to its class
    descriptor = getattr(owner, "DESCRIPTOR", None)
    message_type = str(getattr(descriptor, "full_name", "request message"))

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # any parse failure is the caller's bytes, not a server bug
            return Undecodable(message_type)

    return deserialize


def check_admissible(request: Any, context: aio.ServicerContext) -> None:
    """Refuse a call that must not run: undecodable request, or a deadline that already passed."""
    if isinstance(request, Undecodable):
        raise MalformedRequest(f"the request is not a valid {request.message_type} protobuf")
    remaining = context.time_remaining()  # None without a deadline; clamped at 0 when past
    if remaining is not None and remaining <= 0:
        raise DeadlineExceeded("the call's deadline passed before the server could start it")


async def checked_requests(requests: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    """A request stream that raises :class:`MalformedRequest` at an undecodable message."""
    async for request in requests:
        if isinstance(request, Undecodable):
            raise MalformedRequest(f"the request is not a valid {request.message_type} protobuf")
        yield request


class WrappingInterceptor(aio.ServerInterceptor):
    """An interceptor that wraps each method's handler once and reuses the wrapped one."""

    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        method: str = details.method
        cached = self._wrapped.get(method)
        if cached is not None:
            return cached
        handler = await continuation(details)
        if handler is None:
            return handler
        wrapped = self._wrap_handler(method, handler)
        if wrapped is None:
            return handler
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap_handler(
        self, method: str, handler: grpc.RpcMethodHandler
    ) -> grpc.RpcMethodHandler | None:
        """The wrapped handler, or None to leave ``method`` as it is."""
        raise NotImplementedError


class ObservabilityInterceptor(WrappingInterceptor):
    def __init__(
        self,
        metrics: Metrics,
        served_models: Callable[[], list[str]],
        admit: Admit | None = None,
        warnings: PeerLogLimit | None = None,
    ) -> None:
        super().__init__()
        self._metrics = metrics
        self._served_models = served_models
        self._admit = admit
        self._warnings = warnings if warnings is not None else PeerLogLimit()
        self._disk_full = DiskFullReporter(metrics)

    async def intercept_service(
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler:
        if self._admit is not None:
            method: str = details.method
            try:
                self._admit(method, details.invocation_metadata)
            except (Unauthenticated, PermissionDenied) as exc:
                # Nothing is parsed. Whether the method exists picks the metric label, and a
                # caller with a valid token may learn that it does not (UNIMPLEMENTED).
                known = method in self._wrapped or await continuation(details) is not None
                if not known and isinstance(exc, PermissionDenied):
                    return None
                return self._refusal(method if known else UNKNOWN_METHOD, exc)
        return await super().intercept_service(continuation, details)

    def _refusal(self, method: str, error: LoopserveError) -> grpc.RpcMethodHandler:
        """A handler that answers ``error`` without reading the request: a request stream
        handler (whatever the method's shape) without a deserializer, whose stream is never
        read."""

        def record(code: grpc.StatusCode) -> None:
            self._metrics.child(self._metrics.grpc_requests, method, code.name).inc()

        async def refuse(requests: AsyncIterator[Any], context: aio.ServicerContext) -> NoReturn:
            await self._fail(method, error, context, record)

        return grpc.stream_unary_rpc_method_handler(refuse)

    def _wrap_handler(
        self, method: str, handler: grpc.RpcMethodHandler
    ) -> grpc.RpcMethodHandler | None:
        kind, behavior = handler_kind(handler)
        request_stream = kind.startswith("stream")
        if inspect.isasyncgenfunction(behavior):
            wrapped: Callable[..., Any] = self._wrap_stream(method, behavior, request_stream)
        elif inspect.iscoroutinefunction(behavior):
            # Unary responses, and streams written with context.write (health's Watch).
            wrapped = self._wrap(method, behavior, request_stream)
        else:
            return None  # a synchronous behavior: grpc runs it on a thread, left as it is
        return rebuild(handler, kind, wrapped, tolerant(handler.request_deserializer))

    def _wrap(self, method: str, behavior: Behavior, request_stream: bool = False) -> Behavior:
        is_infer = method == MODEL_INFER
        operation = _operation(method)
        metrics = self._metrics
        child = metrics.child

        async def observed(request: Any, context: aio.ServicerContext) -> Any:
            started = time.perf_counter()
            model = self._model_label(request) if is_infer else ""
            if is_infer:
                child(metrics.in_flight, model).inc()
            recorded = False

            def record(code: grpc.StatusCode, version: str = "") -> None:
                # Before the status goes out: abort() sends it at once, and a client that scrapes
                # metrics right after its call must see that call counted.
                nonlocal recorded
                recorded = True
                child(metrics.grpc_requests, method, code.name).inc()
                if is_infer:
                    child(metrics.in_flight, model).dec()
                    child(metrics.requests, model, version, code.name).inc()
                    child(metrics.request_latency, model).observe(time.perf_counter() - started)

            try:
                if request_stream:
                    request = checked_requests(request)
                check_admissible(request, context)
                response = await behavior(request, context)
                record(grpc.StatusCode.OK, getattr(response, "model_version", ""))
                self._disk_full.succeeded(operation)
                return response
            except aio.AbortError:
                if not recorded:
                    record(context.code() or grpc.StatusCode.UNKNOWN)
                raise
            except asyncio.CancelledError:
                record(grpc.StatusCode.CANCELLED)
                raise
            except Exception as exc:
                await self._fail(method, exc, context, record)

        return observed

    def _wrap_stream(
        self, method: str, behavior: StreamBehavior, request_stream: bool
    ) -> StreamBehavior:
        """The same mapping for a stream: an error may come before or after some messages."""

        def record(code: grpc.StatusCode) -> None:
            self._metrics.child(self._metrics.grpc_requests, method, code.name).inc()

        async def observed(request: Any, context: aio.ServicerContext) -> AsyncGenerator[Any, None]:
            try:
                if request_stream:
                    request = checked_requests(request)
                check_admissible(request, context)
                # aclosing: a cancelled call closes the servicer's generator (and what it
                # subscribed to) at once, not when the garbage collector gets to it.
                async with contextlib.aclosing(behavior(request, context)) as responses:
                    async for response in responses:
                        yield response
            except aio.AbortError:
                record(context.code() or grpc.StatusCode.UNKNOWN)
                raise
            except (asyncio.CancelledError, GeneratorExit):
                record(grpc.StatusCode.CANCELLED)
                raise
            except Exception as exc:
                await self._fail(method, exc, context, record)
            else:
                record(grpc.StatusCode.OK)

        return observed

    async def _fail(
        self,
        method: str,
        exc: Exception,
        context: aio.ServicerContext,
        record: Callable[[grpc.StatusCode], None],
    ) -> NoReturn:
        """Log ``exc`` as its kind deserves, count it, and answer its status."""
        if is_disk_full(exc):  # a file write that no layer below named
            exc = StorageFull("the data of this call")
        code = status_for(exc)
        if isinstance(exc, WORTH_A_WARNING):
            # Garbage on the wire and refused credentials are worth a look (a broken client, a
            # probe, a revoked token) but no traceback, and not a line per call of a client that
            # keeps retrying. Messages never hold a token.
            self._warn(method, code, exc, context.peer())
        elif isinstance(exc, StorageFull):
            self._disk_full.failed(_operation(method), exc)
        elif isinstance(exc, LoopserveError):
            log.info("%s -> %s: %s", method, code.name, exc)
        else:
            log.error("%s failed", method, exc_info=exc)
        record(code)
        await context.abort(code, public_message(exc))
        raise AssertionError("abort() returned")  # it always raises; this satisfies NoReturn

    def _warn(self, method: str, code: grpc.StatusCode, exc: Exception, peer: str) -> None:
        left_out = self._warnings.admit(peer)
        if left_out is None:
            log.debug("%s -> %s: %s (peer %s)", method, code.name, exc, peer)
            return
        more = f"; {left_out} more from this peer not logged" if left_out else ""
        log.warning("%s -> %s: %s (peer %s%s)", method, code.name, exc, peer, more)

    def _model_label(self, request: Any) -> str:
        name = getattr(request, "model_name", "")
        # Only served names become label values, so callers cannot blow up metric cardinality.
        return name if name in self._served_models() else UNKNOWN_MODEL


def _operation(method: str) -> str:
    """The RPC's name (``AddSamples``) for the disk-full count."""
    return method.rsplit("/", 1)[-1]
