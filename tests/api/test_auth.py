"""Who may call what: bearer tokens and scopes on a real in-process server, token parsing, the
principal seen by the core, the metrics endpoint's auth; and the calls refused before they run
(undecodable requests, expired deadlines)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fake_adaptation import MODEL, FakeAdaptationCore, FakeServer
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from loop_thread import serving
from prometheus_client import CollectorRegistry, Counter
from waiting import wait_until_async

from service.api._proto.inference import grpc_predict_v2_pb2 as ipb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.api._proto.loopserve.v1 import adaptation_pb2 as apb
from service.api._proto.loopserve.v1.adaptation_pb2_grpc import AdaptationStub
from service.api.auth import METHOD_SCOPES, bearer_token, caller
from service.api.interceptors import ObservabilityInterceptor
from service.errors import ConfigError, Unauthenticated
from service.metrics import Metrics
from service.security import (
    ANONYMOUS,
    MetricsAuth,
    Scope,
    TokenStore,
    is_loopback,
)
from service.web import MetricsServer

TOKENS = {
    "reader": ("infer", "reader-7c1d0e5b9a8f4e2d"),
    "labeler": ("label", "labeler-0f3b5c7d9e1a2b4c"),
    "operator": ("admin", "operator-5e6f7a8b9c0d1e2f"),
    "app": ("infer,label", "app-token-1a2b3c4d5e6f7a8b"),
}
TOKEN_LINES = ";".join(f"{name}:{scopes}:{token}" for name, (scopes, token) in TOKENS.items())
SECRETS = [token for _, token in TOKENS.values()]

INFER = "/inference.GRPCInferenceService/"
ADAPT = "/loopserve.v1.Adaptation/"
REFLECT_V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
Call = Callable[[grpc.Channel, list[tuple[str, str]]], object]


def _infer_calls() -> dict[str, Call]:
    def stub(channel: grpc.Channel) -> GRPCInferenceServiceStub:
        return GRPCInferenceServiceStub(channel)

    return {
        "ServerLive": lambda c, m: stub(c).ServerLive(ipb.ServerLiveRequest(), metadata=m),
        "ServerReady": lambda c, m: stub(c).ServerReady(ipb.ServerReadyRequest(), metadata=m),
        "ServerMetadata": lambda c, m: stub(c).ServerMetadata(
            ipb.ServerMetadataRequest(), metadata=m
        ),
        "ModelReady": lambda c, m: stub(c).ModelReady(
            ipb.ModelReadyRequest(name=MODEL), metadata=m
        ),
        "ModelMetadata": lambda c, m: stub(c).ModelMetadata(
            ipb.ModelMetadataRequest(name=MODEL), metadata=m
        ),
        "ModelInfer": lambda c, m: stub(c).ModelInfer(
            ipb.ModelInferRequest(model_name=MODEL), metadata=m
        ),
    }


def _adaptation_calls() -> dict[str, Call]:
    def stub(channel: grpc.Channel) -> AdaptationStub:
        return AdaptationStub(channel)

    def watch(channel: grpc.Channel, metadata: list[tuple[str, str]]) -> object:
        # Allowed: the stream stays open until the deadline; refused: the status comes at once.
        request = apb.WatchEventsRequest(model=MODEL)
        return list(stub(channel).WatchEvents(request, metadata=metadata, timeout=0.5))

    sample = apb.Sample(text="where is my parcel", label="shipping", id="s-1")
    return {
        "ListModels": lambda c, m: stub(c).ListModels(apb.ListModelsRequest(), metadata=m),
        "AddSamples": lambda c, m: stub(c).AddSamples(
            apb.AddSamplesRequest(model=MODEL, samples=[sample]), metadata=m
        ),
        "GetLabelingCandidates": lambda c, m: stub(c).GetLabelingCandidates(
            apb.GetLabelingCandidatesRequest(model=MODEL), metadata=m
        ),
        "StartFineTune": lambda c, m: stub(c).StartFineTune(
            apb.StartFineTuneRequest(model=MODEL), metadata=m
        ),
        "Rollback": lambda c, m: stub(c).Rollback(
            apb.RollbackRequest(model=MODEL, version=1), metadata=m
        ),
        "ApproveVersion": lambda c, m: stub(c).ApproveVersion(
            apb.ApproveVersionRequest(model=MODEL, version=99), metadata=m
        ),
        "RejectVersion": lambda c, m: stub(c).RejectVersion(
            apb.RejectVersionRequest(model=MODEL, version=99), metadata=m
        ),
        "GetDriftStatus": lambda c, m: stub(c).GetDriftStatus(
            apb.GetDriftStatusRequest(model=MODEL), metadata=m
        ),
        "ListVersions": lambda c, m: stub(c).ListVersions(
            apb.ListVersionsRequest(model=MODEL), metadata=m
        ),
        "GetModelStatus": lambda c, m: stub(c).GetModelStatus(
            apb.GetModelStatusRequest(model=MODEL), metadata=m
        ),
        "GetJob": lambda c, m: stub(c).GetJob(apb.GetJobRequest(job_id="job-1"), metadata=m),
        "CancelJob": lambda c, m: stub(c).CancelJob(
            apb.CancelJobRequest(model=MODEL, job_id="job-9"), metadata=m
        ),
        "ListSampleSources": lambda c, m: stub(c).ListSampleSources(
            apb.ListSampleSourcesRequest(model=MODEL), metadata=m
        ),
        "PurgeSamples": lambda c, m: stub(c).PurgeSamples(
            apb.PurgeSamplesRequest(model=MODEL, source="nobody"), metadata=m
        ),
        "WatchEvents": watch,
    }


def _reflect(channel: grpc.Channel, metadata: list[tuple[str, str]]) -> object:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    return list(stub.ServerReflectionInfo(iter([request]), metadata=metadata))


def _reflect_v1(channel: grpc.Channel, metadata: list[tuple[str, str]]) -> object:
    """grpc.reflection.v1, whose messages are v1alpha's on the wire."""
    call = channel.stream_stream(
        REFLECT_V1,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    return list(call(iter([request]), metadata=metadata))


# The scope each group needs, written out here (not read from service.api.auth) so that a change
# to the table has to change this test too.
GROUPS: dict[str, dict[str, Call]] = {
    "infer": {
        **{INFER + name: call for name, call in _infer_calls().items()},
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": _reflect,
        REFLECT_V1: _reflect_v1,
    },
    "any": {ADAPT + "ListModels": _adaptation_calls()["ListModels"]},
    "label": {
        ADAPT + name: _adaptation_calls()[name] for name in ("AddSamples", "GetLabelingCandidates")
    },
    "admin": {
        ADAPT + name: call
        for name, call in _adaptation_calls().items()
        if name not in ("ListModels", "AddSamples", "GetLabelingCandidates")
    },
}
# Which groups each caller may call: admin implies label and infer; label does not imply infer.
ALLOWED = {
    "reader": {"infer", "any"},
    "labeler": {"label", "any"},
    "operator": {"infer", "label", "admin", "any"},
    "app": {"infer", "label", "any"},
}


def bearer(name: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {TOKENS[name][1]}")]


def call_code(call: Call, channel: grpc.Channel, metadata: list[tuple[str, str]]) -> str:
    try:
        call(channel, metadata)
    except grpc.RpcError as exc:
        return exc.code().name
    return "OK"


@pytest.fixture(scope="module")
def store() -> TokenStore:
    tokens = TokenStore.load(None, TOKEN_LINES)
    assert tokens is not None
    return tokens


@pytest.fixture
def core() -> FakeAdaptationCore:
    return FakeAdaptationCore()


@pytest.fixture
def server(start_fake_server: Any, core: FakeAdaptationCore, store: TokenStore) -> FakeServer:
    return start_fake_server(core, tokens=store)


@pytest.fixture
def channel(server: FakeServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as channel:
        yield channel


def expect_refusal(
    call: Callable[[], object], code: grpc.StatusCode, *fragments: str
) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    error: grpc.RpcError = info.value
    assert error.code() == code, error.details()
    for fragment in fragments:
        assert fragment in (error.details() or ""), error.details()
    for secret in SECRETS:
        assert secret not in (error.details() or "")
    return error


# ---- scopes per method group ---------------------------------------------------------------------


def test_the_scope_table_covers_every_rpc_of_the_served_services() -> None:
    services = [
        ipb.DESCRIPTOR.services_by_name["GRPCInferenceService"],
        apb.DESCRIPTOR.services_by_name["Adaptation"],
    ]
    methods = {f"/{s.full_name}/{m.name}" for s in services for m in s.methods}
    assert methods <= set(METHOD_SCOPES)
    tested = {method for group in GROUPS.values() for method in group}
    assert methods <= tested


@pytest.mark.parametrize("caller", list(ALLOWED))
def test_each_token_reaches_exactly_the_groups_of_its_scopes(
    caller: str, channel: grpc.Channel
) -> None:
    outcomes = {
        method: call_code(call, channel, bearer(caller))
        for group in GROUPS.values()
        for method, call in group.items()
    }
    for group, methods in GROUPS.items():
        for method in methods:
            if group in ALLOWED[caller]:
                # WatchEvents stays open until its deadline; the fake has no inference models.
                assert outcomes[method] in ("OK", "DEADLINE_EXCEEDED", "NOT_FOUND"), (
                    method,
                    outcomes,
                )
            else:
                assert outcomes[method] == "PERMISSION_DENIED", (method, outcomes)


@pytest.mark.parametrize(
    "metadata",
    [[], [("authorization", "Bearer not-a-configured-token-123")], [("x-api-key", "whatever")]],
    ids=["missing", "unknown", "elsewhere"],
)
def test_every_protected_method_refuses_calls_without_a_valid_token(
    channel: grpc.Channel, metadata: list[tuple[str, str]]
) -> None:
    for group in GROUPS.values():
        for method, call in group.items():
            assert call_code(call, channel, metadata) == "UNAUTHENTICATED", method


def test_missing_token_says_how_to_send_one(channel: grpc.Channel) -> None:
    stub = AdaptationStub(channel)
    expect_refusal(
        lambda: stub.ListModels(apb.ListModelsRequest()),
        grpc.StatusCode.UNAUTHENTICATED,
        "requires a bearer token",
        "'authorization: Bearer <token>'",
        "LOOPSERVE_TOKEN",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Bearer wrong-token-but-long-enough", "the bearer token is not valid on this server"),
        (f"Bearer {TOKENS['operator'][1]}x", "the bearer token is not valid on this server"),
        (f"Basic {TOKENS['operator'][1]}", "must be 'Bearer <token>'"),
        (TOKENS["operator"][1], "must be 'Bearer <token>'"),
        ("Bearer ", "must be 'Bearer <token>'"),
    ],
)
def test_wrong_token_is_unauthenticated_without_echoing_it(
    channel: grpc.Channel, value: str, message: str
) -> None:
    stub = AdaptationStub(channel)
    error = expect_refusal(
        lambda: stub.ListModels(apb.ListModelsRequest(), metadata=[("authorization", value)]),
        grpc.StatusCode.UNAUTHENTICATED,
        message,
    )
    presented = value.split(" ")[-1]
    assert not presented or presented not in (error.details() or "")


def test_bearer_scheme_is_case_insensitive(channel: grpc.Channel) -> None:
    stub = AdaptationStub(channel)
    metadata = [("authorization", f"bearer {TOKENS['reader'][1]}")]
    assert list(stub.ListModels(apb.ListModelsRequest(), metadata=metadata).models) == [MODEL]


def test_two_authorization_entries_are_refused() -> None:
    with pytest.raises(Unauthenticated, match="send one 'authorization' metadata entry"):
        bearer_token([("authorization", "Bearer a"), ("authorization", "Bearer b")])


def test_token_without_the_scope_is_permission_denied_naming_the_scope(
    channel: grpc.Channel,
) -> None:
    stub = AdaptationStub(channel)
    request = apb.AddSamplesRequest(model=MODEL, samples=[apb.Sample(text="hi", label="other")])
    expect_refusal(
        lambda: stub.AddSamples(request, metadata=bearer("reader")),
        grpc.StatusCode.PERMISSION_DENIED,
        "token 'reader' (scopes: infer) lacks the scope 'label' needed for "
        "/loopserve.v1.Adaptation/AddSamples",
    )
    expect_refusal(
        lambda: stub.Rollback(apb.RollbackRequest(model=MODEL, version=1), metadata=bearer("app")),
        grpc.StatusCode.PERMISSION_DENIED,
        "token 'app' (scopes: infer, label) lacks the scope 'admin' needed for "
        "/loopserve.v1.Adaptation/Rollback",
    )


def test_refused_calls_change_nothing(channel: grpc.Channel, core: FakeAdaptationCore) -> None:
    stub = AdaptationStub(channel)
    request = apb.AddSamplesRequest(model=MODEL, samples=[apb.Sample(text="hi", label="other")])
    for metadata in ([], bearer("reader")):
        with pytest.raises(grpc.RpcError):
            stub.AddSamples(request, metadata=metadata)
    assert core.batches == []


def test_health_is_open_without_a_token(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "inference.GRPCInferenceService", "loopserve.v1.Adaptation"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_needs_the_infer_scope(channel: grpc.Channel) -> None:
    expect_refusal(lambda: _reflect(channel, []), grpc.StatusCode.UNAUTHENTICATED)
    responses = _reflect(channel, bearer("reader"))
    assert isinstance(responses, list)
    names = {s.name for s in responses[0].list_services_response.service}
    assert {"inference.GRPCInferenceService", "loopserve.v1.Adaptation"} <= names


def test_refused_calls_are_counted_with_their_code(
    server: FakeServer, channel: grpc.Channel
) -> None:
    stub = AdaptationStub(channel)
    for metadata in ([], [("authorization", "Bearer wrong-token-0000000000")]):
        with pytest.raises(grpc.RpcError):
            stub.ListVersions(apb.ListVersionsRequest(model=MODEL), metadata=metadata)
    with pytest.raises(grpc.RpcError):
        stub.ListVersions(apb.ListVersionsRequest(model=MODEL), metadata=bearer("labeler"))
    stub.ListVersions(apb.ListVersionsRequest(model=MODEL), metadata=bearer("operator"))
    with pytest.raises(grpc.RpcError):
        _reflect(channel, [])
    versions = ADAPT + "ListVersions"
    assert server.grpc_requests(versions, "UNAUTHENTICATED") == 2
    assert server.grpc_requests(versions, "PERMISSION_DENIED") == 1
    assert server.grpc_requests(versions, "OK") == 1
    reflection = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    assert server.grpc_requests(reflection, "UNAUTHENTICATED") == 1


def test_tokens_never_reach_the_log(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stub = AdaptationStub(channel)
    for metadata in (
        [("authorization", "Bearer almost-" + TOKENS["operator"][1])],
        bearer("labeler"),  # lacks the scope
        bearer("operator"),
    ):
        with contextlib.suppress(grpc.RpcError):
            stub.ListVersions(apb.ListVersionsRequest(model=MODEL), metadata=metadata)
    assert "PERMISSION_DENIED" in caplog.text and "UNAUTHENTICATED" in caplog.text
    for secret in SECRETS:
        assert secret not in caplog.text


# ---- the caller passed to the core --------------------------------------------------------------

LABEL_HI = apb.AddSamplesRequest(model=MODEL, samples=[apb.Sample(text="hi", label="other")])


def test_the_core_gets_the_token_name_as_the_caller(
    start_fake_server: Any, store: TokenStore
) -> None:
    core = FakeAdaptationCore()
    pending = dataclasses.replace(core.versions[-1], version=4, status="pending", reason="r")
    core.versions += [pending, dataclasses.replace(pending, version=5)]
    server = start_fake_server(core, tokens=store)
    operator = bearer("operator")
    with grpc.insecure_channel(server.address) as channel:
        stub = AdaptationStub(channel)
        stub.AddSamples(LABEL_HI, metadata=bearer("labeler"))
        stub.AddSamples(LABEL_HI, metadata=bearer("app"))
        approved = stub.ApproveVersion(
            apb.ApproveVersionRequest(model=MODEL, version=4), metadata=operator
        )
        rejected = stub.RejectVersion(
            apb.RejectVersionRequest(model=MODEL, version=5), metadata=operator
        )
        job = stub.StartFineTune(apb.StartFineTuneRequest(model=MODEL), metadata=operator)
        cancelled = stub.CancelJob(
            apb.CancelJobRequest(model=MODEL, job_id=job.id), metadata=operator
        )
    assert [s.source for s in core.stored[-2:]] == ["labeler", "app"]
    assert approved.reason == "r; approved by operator"
    assert rejected.reason == "r; rejected by operator on review"
    assert cancelled.error == "cancelled by operator"
    assert caller() == ANONYMOUS  # nothing leaks into this thread


def test_without_tokens_the_core_gets_anonymous_as_the_caller(start_fake_server: Any) -> None:
    core = FakeAdaptationCore()
    server = start_fake_server(core)
    with grpc.insecure_channel(server.address) as channel:
        AdaptationStub(channel).AddSamples(LABEL_HI)
    assert core.stored[-1].source == ANONYMOUS


# ---- token configuration ------------------------------------------------------------------------


def test_token_file_with_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(
        "# name:scopes:token\n\n"
        "ops:admin:ops-token-0123456789abcdef\n"
        "  labeler-eu : label : label-token-0123456789 \n"
        "both:infer, label:both-token-0123456789:with-colons\n"
    )
    store = TokenStore.load(path, "")
    assert store is not None
    assert store.names == ("ops", "labeler-eu", "both")
    assert store.authenticate("ops-token-0123456789abcdef").scopes == frozenset(Scope)
    assert store.authenticate("label-token-0123456789").scopes == {Scope.LABEL}
    assert store.authenticate("both-token-0123456789:with-colons").scopes == {
        Scope.INFER,
        Scope.LABEL,
    }


def test_file_and_environment_tokens_are_merged_and_newlines_separate_too(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("ops:admin:ops-token-0123456789abcdef\n")
    store = TokenStore.load(path, "a:infer:a-token-0123456789abc\nb:label:b-token-0123456789abc;")
    assert store is not None and store.names == ("ops", "a", "b")


def test_no_tokens_means_auth_off() -> None:
    assert TokenStore.load(None, "") is None
    assert TokenStore.load(None, "  ") is None


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("ops:admin", r"LOOPSERVE_TOKENS: entry 1: expected name:scope\[,scope\.\.\.\]:token"),
        (
            "ops:root:secret-value-0123456789",
            r"entry 1 \(ops\): unknown or missing scope\(s\) 'root'",
        ),
        ("ops::secret-value-0123456789", r"entry 1 \(ops\): unknown or missing scope"),
        ("ops:admin:short-secret", r"entry 1 \(ops\): the token must be 16 to 4096"),
        ("ops:admin:has space in it 0123456789", r"the token must be 16 to 4096 printable ASCII"),
        ("bad name:admin:secret-value-0123456789", r"entry 1: invalid token name"),
        (
            "a:admin:secret-value-0123456789;a:infer:other-value-0123456789",
            r"token name\(s\) configured twice: a",
        ),
        (
            "a:admin:secret-value-0123456789;b:infer:secret-value-0123456789",
            "the same token is configured under two names",
        ),
        ("# only a comment", "no tokens in LOOPSERVE_TOKENS"),
    ],
)
def test_bad_token_configuration_names_the_entry_but_never_the_token(
    lines: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        TokenStore.load(None, lines)
    for part in ("secret-value", "short-secret", "has space", "other-value"):
        assert part not in str(info.value)


def test_bad_token_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("ok:admin:secret-value-0123456789\nbroken\n")
    with pytest.raises(ConfigError, match=rf"{path}: line 2: expected name:scope"):
        TokenStore.load(path, "")
    with pytest.raises(ConfigError, match=r"cannot read tokens file .*absent"):
        TokenStore.load(tmp_path / "absent", "")


def test_admin_implies_label_and_infer_but_label_implies_nothing() -> None:
    store = TokenStore.load(None, TOKEN_LINES)
    assert store is not None
    assert store.authenticate(TOKENS["operator"][1]).scopes == {
        Scope.ADMIN,
        Scope.LABEL,
        Scope.LABEL_TRUSTED,
        Scope.INFER,
    }
    assert store.authenticate(TOKENS["labeler"][1]).scopes == {Scope.LABEL}
    assert store.authenticate(TOKENS["reader"][1]).scopes == {Scope.INFER}
    assert not store.trusted("labeler") and store.trusted("operator")


def test_a_trusted_labeling_token_labels_and_its_rounds_skip_the_review() -> None:
    # The scope name holds a ':'; a token may hold one too.
    store = TokenStore.load(
        None, "team:label:trusted:team:token-0123456789;x:label:a:b-0123456789abcd"
    )
    assert store is not None
    assert store.authenticate("team:token-0123456789").scopes == {Scope.LABEL, Scope.LABEL_TRUSTED}
    assert store.authenticate("a:b-0123456789abcd").scopes == {Scope.LABEL}
    assert store.trusted("team") and not store.trusted("x") and not store.trusted("nobody")
    with pytest.raises(ConfigError, match="unknown or missing scope"):
        TokenStore.load(None, "y:labl:trusted:z-0123456789abcdef")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.5", False),
        ("example.internal", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# ---- the metrics endpoint -----------------------------------------------------------------------


@pytest.fixture
def metrics_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("loopserve_test_calls", "A counter for the test.", registry=registry).inc()
    return registry


def scrape(port: int, authorization: str | None = None) -> tuple[int, dict[str, list[str]], str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, _headers(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, _headers(exc.headers), exc.read().decode()


def _headers(headers: Any) -> dict[str, list[str]]:
    return {name.lower(): headers.get_all(name) for name in headers}


def basic(pair: str) -> str:
    return "Basic " + base64.b64encode(pair.encode()).decode()


@pytest.fixture
def guarded_metrics(metrics_registry: CollectorRegistry, tmp_path: Path) -> Iterator[int]:
    token_file = tmp_path / "metrics-token"
    token_file.write_text("scrape-token-from-file\n")
    auth = MetricsAuth.load(token_file, "scrape-token-from-env", "prometheus:hunter2-long")
    server = MetricsServer(metrics_registry, "127.0.0.1", 0, auth)
    with serving(server):
        yield server.port


def test_metrics_without_credentials_are_401_with_challenges(guarded_metrics: int) -> None:
    status, headers, body = scrape(guarded_metrics)
    assert status == 401
    assert headers["www-authenticate"] == [
        'Bearer realm="loopserve metrics"',
        'Basic realm="loopserve metrics"',
    ]
    assert "loopserve_test_calls" not in body


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer wrong",
        "Bearer scrape-token-from-fil",
        basic("prometheus:wrong"),
        "Basic !!!not-base64",
        "Digest x",
    ],
)
def test_metrics_with_wrong_credentials_are_401(guarded_metrics: int, authorization: str) -> None:
    assert scrape(guarded_metrics, authorization)[0] == 401


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer scrape-token-from-file",
        "Bearer scrape-token-from-env",
        basic("prometheus:hunter2-long"),
    ],
)
def test_metrics_with_credentials_are_200(guarded_metrics: int, authorization: str) -> None:
    status, headers, body = scrape(guarded_metrics, authorization)
    assert status == 200
    assert headers["content-type"][0].startswith("text/plain; version=")
    assert "loopserve_test_calls_total 1.0" in body


def test_metrics_without_auth_configured_are_open(metrics_registry: CollectorRegistry) -> None:
    server = MetricsServer(metrics_registry, "127.0.0.1", 0, None)
    with serving(server):
        assert scrape(server.port)[0] == 200


def test_other_paths_are_404(guarded_metrics: int) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{guarded_metrics}/", timeout=5)
    assert info.value.code == 404


@pytest.mark.parametrize("pair", ["no-colon", ":password", "user:"])
def test_malformed_basic_auth_setting_is_a_config_error(pair: str) -> None:
    with pytest.raises(ConfigError, match="LOOPSERVE_METRICS_BASIC_AUTH must be user:password"):
        MetricsAuth.load(None, "", pair)


def test_empty_metrics_token_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match=r"metrics token file .*empty is empty"):
        MetricsAuth.load(tmp_path / "empty", "", "")


# ---- calls refused before they run ----------------------------------------------------------------


@pytest.fixture
def open_server(start_fake_server: Any, core: FakeAdaptationCore) -> FakeServer:
    return start_fake_server(core)


@pytest.mark.parametrize(
    ("method", "message_type"),
    [
        (INFER + "ModelInfer", "inference.ModelInferRequest"),
        (ADAPT + "AddSamples", "loopserve.v1.AddSamplesRequest"),
    ],
)
def test_undecodable_request_is_invalid_argument_counted_and_logged_once(
    open_server: FakeServer,
    caplog: pytest.LogCaptureFixture,
    core: FakeAdaptationCore,
    method: str,
    message_type: str,
) -> None:
    caplog.set_level(logging.INFO)
    with grpc.insecure_channel(open_server.address) as channel:
        raw = channel.unary_unary(method)  # bytes in, bytes out
        expect_refusal(
            lambda: raw(b"\xff\xff\xff\xff garbage", timeout=5),
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request is not a valid {message_type} protobuf",
        )
    assert open_server.grpc_requests(method, "INVALID_ARGUMENT") == 1
    records = [r for r in caplog.records if "not a valid" in r.getMessage()]
    assert [(r.levelname, r.exc_info) for r in records] == [("WARNING", None)]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert core.batches == []


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
def test_undecodable_message_in_a_request_stream_is_invalid_argument(
    open_server: FakeServer, version: str
) -> None:
    method = f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
    with grpc.insecure_channel(open_server.address) as channel:
        raw = channel.stream_stream(method)
        expect_refusal(
            lambda: list(raw(iter([b"\xff\xff\xff"]), timeout=5)),
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request is not a valid grpc.reflection.{version}.ServerReflectionRequest protobuf",
        )
    assert open_server.grpc_requests(method, "INVALID_ARGUMENT") == 1


def test_undecodable_request_without_a_token_is_unauthenticated(server: FakeServer) -> None:
    # The token is checked before the request is parsed: garbage tells such a caller nothing.
    for method in (INFER + "ModelInfer", ADAPT + "AddSamples"):
        with grpc.insecure_channel(server.address) as channel:
            raw = channel.unary_unary(method)
            expect_refusal(
                lambda raw=raw: raw(b"\xff\xff\xff", timeout=5),
                grpc.StatusCode.UNAUTHENTICATED,
                "requires a bearer token",
            )
        assert server.grpc_requests(method, "UNAUTHENTICATED") == 1
        assert server.grpc_requests(method, "INVALID_ARGUMENT") == 0


class SlowToDecode:
    """A method whose request takes longer to decode than the caller's deadline: the time a busy
    server takes before a handler starts."""

    def __init__(self) -> None:
        self.ran = threading.Event()

    def handler(self) -> grpc.GenericRpcHandler:
        async def behavior(request: bytes, context: aio.ServicerContext) -> bytes:
            self.ran.set()
            return request

        def decode(data: bytes) -> bytes:
            time.sleep(0.4)  # blocks the server's loop, as a CPU-bound stretch would
            return data

        method = grpc.unary_unary_rpc_method_handler(behavior, request_deserializer=decode)
        return grpc.method_handlers_generic_handler("test.Slow", {"Call": method})


def test_call_whose_deadline_passed_before_it_started_is_not_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    metrics, slow = Metrics(), SlowToDecode()

    def counted() -> float | None:
        labels = {"method": "/test.Slow/Call", "code": "DEADLINE_EXCEEDED"}
        return metrics.registry.get_sample_value("loopserve_grpc_requests_total", labels)

    async def scenario() -> grpc.StatusCode:
        server = aio.server(interceptors=[ObservabilityInterceptor(metrics, list)])
        server.add_generic_rpc_handlers((slow.handler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                try:
                    await channel.unary_unary("/test.Slow/Call")(b"x", timeout=0.2)
                except aio.AioRpcError as exc:
                    code: grpc.StatusCode = exc.code()
                await wait_until_async(counted, 5, "the server to finish with the call")
                return code
        finally:
            await server.stop(0)

    assert asyncio.run(scenario()) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert not slow.ran.is_set()
    assert counted() == 1
    assert "the call's deadline passed before the server could start it" in caplog.text
