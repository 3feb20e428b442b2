"""Bearer-token authentication and per-method scopes for the gRPC server.

One table, :data:`METHOD_SCOPES`, says which scope each method needs; a method not in it needs
``admin`` (a new RPC is closed until someone decides otherwise). ``grpc.health.v1.Health`` is open
so that probes need no token.

Two checks, both from the call's metadata: :meth:`AuthInterceptor.admit` runs in the
observability interceptor before the request is read, so a caller without a valid token never
gets its bytes parsed, and learns nothing about which methods exist (an unknown method is
UNAUTHENTICATED for it, UNIMPLEMENTED only for a caller with a valid token); refused calls are
counted and logged there. :class:`AuthInterceptor` itself runs inside, per call, and hands the
principal's name to the servicer, which passes it to the core as ``caller=`` (:func:`caller`).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

import grpc
from grpc import aio

from service.api.interceptors import WrappingInterceptor, handler_kind, rebuild
from service.errors import Unauthenticated
from service.security import ANONYMOUS, Principal, Scope, TokenStore

INFERENCE = "/inference.GRPCInferenceService/"
ADAPTATION = "/loopserve.v1.Adaptation/"
# None: any valid token, whatever its scopes.
METHOD_SCOPES: dict[str, Scope | None] = {
    f"{INFERENCE}ServerLive": Scope.INFER,
    f"{INFERENCE}ServerReady": Scope.INFER,
    f"{INFERENCE}ModelReady": Scope.INFER,
    f"{INFERENCE}ServerMetadata": Scope.INFER,
    f"{INFERENCE}ModelMetadata": Scope.INFER,
    f"{INFERENCE}ModelInfer": Scope.INFER,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Scope.INFER,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": Scope.INFER,
    # Every caller needs the model names (`loopserve label` resolves its model through them).
    f"{ADAPTATION}ListModels": None,
    f"{ADAPTATION}AddSamples": Scope.LABEL,
    f"{ADAPTATION}GetLabelingCandidates": Scope.LABEL,
    f"{ADAPTATION}StartFineTune": Scope.ADMIN,
    f"{ADAPTATION}Rollback": Scope.ADMIN,
    f"{ADAPTATION}ApproveVersion": Scope.ADMIN,
    f"{ADAPTATION}RejectVersion": Scope.ADMIN,
    f"{ADAPTATION}GetDriftStatus": Scope.ADMIN,
    f"{ADAPTATION}ListVersions": Scope.ADMIN,
    f"{ADAPTATION}ListSampleSources": Scope.ADMIN,
    f"{ADAPTATION}PurgeSamples": Scope.ADMIN,
    f"{ADAPTATION}GetModelStatus": Scope.ADMIN,
    f"{ADAPTATION}GetJob": Scope.ADMIN,
    f"{ADAPTATION}CancelJob": Scope.ADMIN,
    f"{ADAPTATION}WatchEvents": Scope.ADMIN,
}
DEFAULT_SCOPE = Scope.ADMIN
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
MISSING = (
    "this server requires a bearer token: send the metadata 'authorization: Bearer <token>' "
    "(loopserve commands: --token or LOOPSERVE_TOKEN)"
)
# Set by the guard for the duration of a call; read only through caller(), in service/api.
_caller: contextvars.ContextVar[str] = contextvars.ContextVar("loopserve_caller", default=ANONYMOUS)


def required_scope(method: str) -> Scope | None:
    """The scope ``method`` needs (None: any valid token)."""
    return METHOD_SCOPES.get(method, DEFAULT_SCOPE)


def caller() -> str:
    """The name of the token the current call was authenticated with; ANONYMOUS without
    authentication (no guard ran) and outside a call.

    A context variable because grpc.aio hands a handler only (request, context), and that context
    takes no attributes; the servicer passes the name on to the core explicitly (``caller=``).
    """
    return _caller.get()


def is_open(method: str) -> bool:
    return method.startswith(OPEN_PREFIXES)


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The token of the single ``authorization: Bearer <token>`` entry; Unauthenticated else."""
    values = [value for key, value in metadata or () if key.lower() == "authorization"]
    if not values:
        raise Unauthenticated(MISSING)
    if len(values) > 1:
        raise Unauthenticated("send one 'authorization' metadata entry, not several")
    value = values[0]
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    scheme, _, token = text.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the 'authorization' metadata must be 'Bearer <token>'")
    return token.strip()


class AuthInterceptor(WrappingInterceptor):
    """Checks each call's bearer token against ``tokens`` and the method's scope.

    The guard runs per call inside the handler (not in ``intercept_service``: the outer
    interceptor caches handlers per method) and checks again what :meth:`admit` checked before
    the request was read, to know the principal. A refusal raises :class:`Unauthenticated` or
    :class:`PermissionDenied` (messages name a token's name at most, never its value); the
    :class:`~service.api.interceptors.ObservabilityInterceptor` outside maps, logs and counts it.
    The principal's name is what :func:`caller` answers while the call runs.
    """

    def __init__(self, tokens: TokenStore) -> None:
        super().__init__()
        self._tokens = tokens

    def _wrap_handler(
        self, method: str, handler: grpc.RpcMethodHandler
    ) -> grpc.RpcMethodHandler | None:
        if is_open(method):
            return None
        kind, behavior = handler_kind(handler)
        if inspect.isasyncgenfunction(behavior):
            guarded: Callable[..., Any] = self._guard_stream(method, behavior)
        else:
            guarded = self._guard(method, behavior)
        return rebuild(handler, kind, guarded)

    def admit(self, method: str, metadata: Sequence[tuple[str, str | bytes]] | None) -> None:
        """Raise Unauthenticated or PermissionDenied unless the caller may call ``method``
        (known or not); open methods admit everyone."""
        if not is_open(method):
            self.authorize(method, metadata)

    def authorize(
        self, method: str, metadata: Sequence[tuple[str, str | bytes]] | None
    ) -> Principal:
        """The caller's principal; Unauthenticated or PermissionDenied when it may not call."""
        principal = self._tokens.authenticate(bearer_token(metadata))
        principal.require(required_scope(method), method)
        return principal

    def _guard(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def guarded(request: Any, context: aio.ServicerContext) -> Any:
            principal = self.authorize(method, context.invocation_metadata())
            previous = _caller.set(principal.name)
            try:
                result = behavior(request, context)
                return (await result) if inspect.isawaitable(result) else result
            finally:
                _caller.reset(previous)

        return guarded

    def _guard_stream(
        self, method: str, behavior: Callable[..., AsyncGenerator[Any, None]]
    ) -> Callable[..., AsyncGenerator[Any, None]]:
        async def guarded(request: Any, context: aio.ServicerContext) -> AsyncGenerator[Any, None]:
            principal = self.authorize(method, context.invocation_metadata())
            previous = _caller.set(principal.name)
            try:
                async with contextlib.aclosing(behavior(request, context)) as responses:
                    async for response in responses:
                        yield response
            finally:
                # A generator may be closed from another context (garbage collection); the
                # call's task context ends with the call then anyway.
                with contextlib.suppress(ValueError):
                    _caller.reset(previous)

        return guarded
