"""Calls refused before their request is read, and how often refusals are logged.

A caller without a valid token gets UNAUTHENTICATED whatever it sends: unknown methods and
unparsable or large messages included, and its request is never deserialized. Refusal warnings
are rate-limited per peer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from fake_adaptation import MODEL, FakeAdaptationCore, FakeServer
from grpc import aio

from service.api._proto.loopserve.v1 import adaptation_pb2 as apb
from service.api._proto.loopserve.v1.adaptation_pb2_grpc import AdaptationStub
from service.api.auth import AuthInterceptor
from service.api.interceptors import UNKNOWN_METHOD, ObservabilityInterceptor
from service.api.log_limit import PeerLogLimit, peer_address
from service.metrics import Metrics
from service.security import TokenStore

TOKENS = {
    "reader": ("infer", "reader-7c1d0e5b9a8f4e2d"),
    "operator": ("admin", "operator-5e6f7a8b9c0d1e2f"),
}
UNKNOWN = "/loopserve.v1.Adaptation/NoSuchMethod"


def bearer(name: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {TOKENS[name][1]}")]


@pytest.fixture(scope="module")
def tokens() -> TokenStore:
    lines = ";".join(f"{name}:{scopes}:{token}" for name, (scopes, token) in TOKENS.items())
    store = TokenStore.load(None, lines)
    assert store is not None
    return store


@pytest.fixture
def server(start_fake_server: Any, tokens: TokenStore) -> FakeServer:
    return start_fake_server(FakeAdaptationCore(), tokens=tokens)


@pytest.fixture
def channel(server: FakeServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as channel:
        yield channel


def code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    code: grpc.StatusCode = info.value.code()
    return code


# ---- unknown methods -----------------------------------------------------------------------------


def test_an_unknown_method_without_a_token_is_unauthenticated_and_counted_as_unknown(
    server: FakeServer, channel: grpc.Channel
) -> None:
    raw = channel.unary_unary(UNKNOWN)
    assert code_of(lambda: raw(b"", timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
    wrong = [("authorization", "Bearer not-a-configured-token-123")]
    assert code_of(lambda: raw(b"", metadata=wrong, timeout=5)) == (grpc.StatusCode.UNAUTHENTICATED)
    # The caller's method name never becomes a label value.
    assert server.grpc_requests(UNKNOWN_METHOD, "UNAUTHENTICATED") == 2
    assert server.grpc_requests(UNKNOWN, "UNAUTHENTICATED") == 0


@pytest.mark.parametrize("caller", ["operator", "reader"])
def test_an_unknown_method_with_a_valid_token_is_unimplemented(
    channel: grpc.Channel, caller: str
) -> None:
    raw = channel.unary_unary(UNKNOWN)
    assert code_of(lambda: raw(b"", metadata=bearer(caller), timeout=5)) == (
        grpc.StatusCode.UNIMPLEMENTED
    )
    stream = channel.stream_stream("/no.Such/Stream")
    assert code_of(lambda: list(stream(iter([b"x"]), metadata=bearer(caller), timeout=5))) == (
        grpc.StatusCode.UNIMPLEMENTED
    )


def test_garbage_with_a_valid_token_is_still_invalid_argument(channel: grpc.Channel) -> None:
    raw = channel.unary_unary("/loopserve.v1.Adaptation/AddSamples")
    code = code_of(lambda: raw(b"\xff\xff\xff", metadata=bearer("operator"), timeout=5))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_health_stays_open_and_a_known_method_still_works(channel: grpc.Channel) -> None:
    health = channel.unary_unary("/grpc.health.v1.Health/Check")
    assert health(b"", timeout=5) == b"\x08\x01"  # SERVING
    stub = AdaptationStub(channel)
    response = stub.ListModels(apb.ListModelsRequest(), metadata=bearer("reader"), timeout=5)
    assert list(response.models) == [MODEL]


# ---- the request of a refused call is never deserialized ----------------------------------------


class Spy:
    """A method whose deserializer counts the messages it parsed."""

    METHOD = "/test.Spy/Call"  # not in the scope table: it needs admin

    def __init__(self) -> None:
        self.parsed = 0

    def handler(self) -> grpc.GenericRpcHandler:
        async def behavior(request: bytes, context: aio.ServicerContext) -> bytes:
            return b"ok"

        def parse(data: bytes) -> bytes:
            self.parsed += 1
            return data

        method = grpc.unary_unary_rpc_method_handler(behavior, request_deserializer=parse)
        return grpc.method_handlers_generic_handler("test.Spy", {"Call": method})


def _spy_outcomes(
    tokens: TokenStore, spy: Spy, calls: list[tuple[bytes, list[tuple[str, str]]]]
) -> list[grpc.StatusCode]:
    async def scenario() -> list[grpc.StatusCode]:
        auth = AuthInterceptor(tokens)
        server = aio.server(
            interceptors=[ObservabilityInterceptor(Metrics(), list, admit=auth.admit), auth],
            options=[("grpc.max_receive_message_length", 4 * 1024 * 1024)],
        )
        server.add_generic_rpc_handlers((spy.handler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        codes = []
        try:
            async with aio.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 8 * 1024 * 1024)]
            ) as channel:
                call = channel.unary_unary(Spy.METHOD)
                for payload, metadata in calls:
                    try:
                        await call(payload, metadata=metadata, timeout=10)
                        codes.append(grpc.StatusCode.OK)
                    except aio.AioRpcError as exc:
                        codes.append(exc.code())
        finally:
            await server.stop(0)
        return codes

    return asyncio.run(scenario())


def test_a_large_message_without_a_token_is_refused_without_being_parsed(
    tokens: TokenStore,
) -> None:
    spy = Spy()
    large = b"\x0a" + b"\xff" * (3_900_000)
    codes = _spy_outcomes(
        tokens,
        spy,
        [
            (large, []),
            (large, [("authorization", "Bearer not-a-configured-token-123")]),
            (large, bearer("reader")),  # a valid token without the scope
        ],
    )
    assert codes == [
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    ]
    assert spy.parsed == 0
    # The control: a caller that may call it has its message parsed.
    assert _spy_outcomes(tokens, spy, [(b"small", bearer("operator"))]) == [grpc.StatusCode.OK]
    assert spy.parsed == 1


# ---- refusal warnings are rate-limited per peer -------------------------------------------------


def test_repeated_refusals_from_one_peer_log_one_warning(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="service.api")
    stub = AdaptationStub(channel)
    for _ in range(5):
        with pytest.raises(grpc.RpcError):
            stub.ListModels(apb.ListModelsRequest(), timeout=5)
    refusals = [r for r in caplog.records if "UNAUTHENTICATED" in r.getMessage()]
    assert [r.levelname for r in refusals] == ["WARNING"] + ["DEBUG"] * 4


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_peer_gets_one_line_per_interval_and_then_hears_how_many_were_left_out() -> None:
    clock = Clock()
    limit = PeerLogLimit(interval=60, clock=clock)
    assert limit.admit("ipv4:10.0.0.1:5000") == 0
    # Another connection of the same address is the same peer.
    assert [limit.admit(f"ipv4:10.0.0.1:{port}") for port in (5001, 5002, 5003)] == [None] * 3
    assert limit.admit("ipv4:10.0.0.2:5000") == 0  # another peer is not held back
    clock.now += 59.9
    assert limit.admit("ipv4:10.0.0.1:5000") is None
    clock.now += 0.1
    assert limit.admit("ipv4:10.0.0.1:5000") == 4
    assert limit.admit("ipv4:10.0.0.1:5000") is None


def test_the_peer_table_is_bounded_and_all_peers_share_a_budget() -> None:
    clock = Clock()
    limit = PeerLogLimit(interval=60, max_peers=10, budget=1000, clock=clock)
    for i in range(100):
        assert limit.admit(f"ipv6:[2001:db8::{i:x}]:443") == 0
    assert len(limit) == 10
    tight = PeerLogLimit(interval=60, budget=3, clock=clock)
    assert [tight.admit(f"ipv4:10.0.0.{i}:1") for i in range(5)] == [0, 0, 0, None, None]
    clock.now += 60
    assert tight.admit("ipv4:10.0.0.9:1") == 0


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:127.0.0.1:54321", "ipv4:127.0.0.1"),
        ("ipv6:[::1]:54321", "ipv6:[::1]"),
        ("ipv6:[2001:db8::1]:443", "ipv6:[2001:db8::1]"),
        ("unix:/run/loopserve.sock", "unix:/run/loopserve.sock"),
    ],
)
def test_peer_address_drops_the_port(peer: str, address: str) -> None:
    assert peer_address(peer) == address
