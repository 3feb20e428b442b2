"""Every RPC of both services over gRPC, against the real app on the tiny model (one server per
module): hypothesis-made request messages, damaged and random bytes, and any authorization
metadata get a deliberate status (never INTERNAL or UNKNOWN), in time, with a short message.
Then the table of each RPC's error statuses, with the (RPC, status) pairs no other test covers.

Converter-level properties: tests/api/test_fuzz.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import TINY_LABELS, TINY_MODEL, RunningApp
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waiting import wait_until

from service.api._proto.inference import grpc_predict_v2_pb2 as ipb
from service.api._proto.loopserve.v1 import adaptation_pb2 as apb
from service.api.auth import METHOD_SCOPES
from service.api.converters import BytesCodec
from service.api.server import MAX_MESSAGE_BYTES
from service.config import ServerSettings
from service.errors import MAX_IDENTIFIER_CHARS
from service.metrics import Metrics
from service.tasks import ALL_OUTPUTS

ROOT = Path(__file__).resolve().parents[2]
SERVICES = (
    ipb.DESCRIPTOR.services_by_name["GRPCInferenceService"],
    apb.DESCRIPTOR.services_by_name["Adaptation"],
)
# "/inference.GRPCInferenceService/ModelInfer" -> its descriptor, for every RPC of both services.
METHODS: dict[str, MethodDescriptor] = {
    f"/{service.full_name}/{method.name}": method
    for service in SERVICES
    for method in service.methods
}
RPC_PATHS = {method.name: path for path, method in METHODS.items()}
CALL_TIMEOUT = 5.0  # a unary call that takes longer hangs
STREAM_WINDOW = 0.2  # a stream that has said nothing by then is open, as WatchEvents stays
MAX_MESSAGE = 400
BAD = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 16 * 2**20)]

# Two real apps and hundreds of calls per RPC: about a minute on 2 cores.
pytestmark = pytest.mark.slow

TOKENS = {
    "reader": ("infer", "reader-0a1b2c3d4e5f6a7b"),
    "labeler": ("label", "labeler-8c9d0e1f2a3b4c5d"),
    "operator": ("admin", "operator-6e7f8a9b0c1d2e3f"),
}
TOKEN_LINES = ";".join(f"{name}:{scopes}:{token}" for name, (scopes, token) in TOKENS.items())
SECRETS = [token for _, token in TOKENS.values()]
# A message too long for gRPC's 16 KB trailer reaches the caller as RESOURCE_EXHAUSTED instead.
TRAILER_OVERFLOW = "received metadata size exceeds"


# ---- servers ------------------------------------------------------------------------------------


def run_app(models_dir: Path, built_state: Path, directory: Path, **settings: Any) -> RunningApp:
    state = directory / "state"
    shutil.copytree(built_state, state)
    values: dict[str, Any] = {
        "models": (TINY_MODEL,),
        "models_dir": models_dir,
        "state_dir": state,
        "host": "127.0.0.1",
        "grpc_port": 0,
        "metrics_port": 0,
        "drain_seconds": 5.0,
        **settings,
    }
    return RunningApp(ServerSettings(**values), Metrics())


@pytest.fixture(scope="module")
def open_app(
    models_dir: Path, built_state: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApp]:
    """The real app without tokens: the fuzzed calls reach the servicers and cores."""
    app = run_app(models_dir, built_state, tmp_path_factory.mktemp("open-app"))
    yield app
    app.stop()


@pytest.fixture(scope="module")
def secured_app(
    models_dir: Path, built_state: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApp]:
    """The real app with tokens: authorization fuzzing and the table of error statuses."""
    app = run_app(
        models_dir, built_state, tmp_path_factory.mktemp("secured-app"), tokens=TOKEN_LINES
    )
    yield app
    app.stop()


@pytest.fixture(scope="module")
def open_channel(open_app: RunningApp) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(open_app.address, options=CHANNEL_OPTIONS) as channel:
        yield channel


@pytest.fixture(scope="module")
def secured_channel(secured_app: RunningApp) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(secured_app.address, options=CHANNEL_OPTIONS) as channel:
        yield channel


# ---- calling any method with bytes ----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    details: str
    response: bytes | None = None  # a unary call's, or a stream's first message


def invoke(
    channel: grpc.Channel,
    method: str,
    payload: bytes,
    metadata: list[tuple[str, str]] | None = None,
    timeout: float = CALL_TIMEOUT,
    window: float = STREAM_WINDOW,
) -> Outcome:
    """Send ``payload`` as the request of ``method`` (no serializer: the bytes go as they are).
    A stream is cancelled after its first message or, open and quiet, after ``window``: then its
    outcome is DEADLINE_EXCEEDED, which only a stream may answer."""
    try:
        if METHODS[method].server_streaming:
            stream = channel.unary_stream(method)(payload, timeout=window, metadata=metadata)
            first = next(stream, None)
            stream.cancel()
            return Outcome(grpc.StatusCode.OK, "", first)
        response = channel.unary_unary(method)(payload, timeout=timeout, metadata=metadata)
        return Outcome(grpc.StatusCode.OK, "", response)
    except grpc.RpcError as error:
        return Outcome(error.code(), error.details() or "")


def check(method: str, payload: bytes, outcome: Outcome) -> None:
    """The properties every call has, whatever it sent."""
    code, details = outcome.code, outcome.details
    assert code not in BAD, (method, code, details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        assert METHODS[method].server_streaming, f"{method} hung for {CALL_TIMEOUT}s"
    assert TRAILER_OVERFLOW not in details, (method, details)
    assert len(details) < MAX_MESSAGE, (method, len(details), details)
    if outcome.response is not None:  # what the server sends parses as the declared type
        GetMessageClass(METHODS[method].output_type).FromString(outcome.response)


# ---- strategies: any request message of any method -------------------------------------------------

INT64 = st.integers(-(2**63), 2**63 - 1)
SPECIAL_STRINGS = [
    "",
    " ",
    "\x00",
    "\u202etxet",
    "😀" * 40,
    "\U000e0001" * 40,  # escaped by repr(): 10 characters each
    "m" * MAX_IDENTIFIER_CHARS,
    "m" * (MAX_IDENTIFIER_CHARS + 1),
    "r" * 501,  # over MAX_REASON_CHARS
    "é" * 20_000,
]


def mix(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each drawn about as often as its weight says (``st.one_of`` draws
    every branch about as often, duplicates too)."""
    indices = [i for i, (weight, _) in enumerate(choices) for _ in range(weight)]
    return st.sampled_from(indices).flatmap(lambda i: choices[i][1])


STRINGS = mix(
    (1, st.sampled_from(SPECIAL_STRINGS)),
    (3, st.text(max_size=12)),
    (1, st.text(min_size=100, max_size=300)),
)
# Values that reach past the first checks (a served model, its input, its outputs...).
MODELS = mix((3, st.just(TINY_MODEL)), (1, st.just("")), (2, STRINGS))
VERSIONS = mix((3, st.just("")), (1, st.sampled_from(["1", "2", "0", "-1", " 1"])), (1, STRINGS))
NOT_A_LABEL = STRINGS.filter(lambda label: label not in TINY_LABELS)
FIELD_OVERRIDES: dict[str, st.SearchStrategy[Any]] = {
    "inference.ModelReadyRequest.name": MODELS,
    "inference.ModelReadyRequest.version": VERSIONS,
    "inference.ModelMetadataRequest.name": MODELS,
    "inference.ModelMetadataRequest.version": VERSIONS,
    "inference.ModelInferRequest.model_name": MODELS,
    "inference.ModelInferRequest.model_version": VERSIONS,
    "inference.ModelInferRequest.InferInputTensor.name": mix((3, st.just("text")), (1, STRINGS)),
    "inference.ModelInferRequest.InferInputTensor.datatype": mix(
        (3, st.just("BYTES")), (1, st.sampled_from(["FP32", "INT8", "FP16", "BF16"])), (1, STRINGS)
    ),
    "inference.ModelInferRequest.InferInputTensor.shape": st.lists(
        mix((4, st.integers(-1, 3)), (1, INT64), (1, st.sampled_from([0, 2**32, 2**63 - 1]))),
        max_size=3,
    ),
    "inference.ModelInferRequest.InferRequestedOutputTensor.name": mix(
        (3, st.sampled_from(ALL_OUTPUTS)), (1, STRINGS)
    ),
    "inference.InferTensorContents.bytes_contents": st.lists(
        mix((3, st.text(max_size=30).map(str.encode)), (1, st.binary(max_size=30))), max_size=4
    ),
    "loopserve.v1.Sample.label": NOT_A_LABEL,
    "loopserve.v1.GetJobRequest.job_id": mix((1, st.sampled_from(["1", "job-1"])), (2, STRINGS)),
    "loopserve.v1.RollbackRequest.version": mix((3, st.integers(-1, 3)), (1, INT64)),
    "loopserve.v1.GetLabelingCandidatesRequest.count": mix(
        (3, st.integers(-2, 1001)), (1, st.integers(-(2**31), 2**31 - 1))
    ),
}
for _field in apb.DESCRIPTOR.message_types_by_name.values():
    if _field.name.endswith("Request") and "model" in _field.fields_by_name:
        FIELD_OVERRIDES[f"{_field.full_name}.model"] = MODELS
SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: STRINGS,
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=40),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: INT64,
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
    FieldDescriptor.TYPE_FLOAT: st.floats(width=32),
    FieldDescriptor.TYPE_DOUBLE: st.floats(),
}


def field_values(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    override = FIELD_OVERRIDES.get(field.full_name)
    if override is not None:
        return override
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        entry = field.message_type
        if entry.GetOptions().map_entry:
            keys = field_values(entry.fields_by_name["key"], depth)
            values = field_values(entry.fields_by_name["value"], depth + 1)
            assert keys is not None and values is not None
            return st.dictionaries(keys, values, max_size=3)
        if depth >= 3:
            return None
        single = messages(entry, depth + 1)
    else:
        single = SCALARS[field.type]
    return st.lists(single, max_size=4) if field.is_repeated else single


def one_field(field: FieldDescriptor, depth: int) -> st.SearchStrategy[dict[str, Any]]:
    values = field_values(field, depth)
    assert values is not None
    return values.map(lambda value: {field.name: value})


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Any message of the type: each field set or not, to any value of its type (one field of a
    oneof at most)."""
    cls = GetMessageClass(descriptor)
    fields = {}
    for field in descriptor.fields:
        values = field_values(field, depth)
        if values is not None and field.containing_oneof is None:
            fields[field.name] = values
    oneofs = [
        st.sampled_from(list(oneof.fields)).flatmap(lambda f: one_field(f, depth))
        for oneof in descriptor.oneofs
    ]
    plain = st.fixed_dictionaries({}, optional=fields)
    if not oneofs:
        return plain.map(lambda kwargs: cls(**kwargs))
    return st.tuples(plain, st.one_of(st.just({}), *oneofs)).map(lambda p: cls(**p[0], **p[1]))


@st.composite
def text_requests(draw: st.DrawFn) -> ipb.ModelInferRequest:
    """ModelInfer requests the tiny model takes, but for their texts, id and outputs: the path
    through the batcher and ONNX Runtime with any unicode."""
    text = mix(
        (6, st.text(min_size=1, max_size=60)),
        (1, st.text(min_size=1000, max_size=3000)),
        (1, st.sampled_from(["\x00", " ", "\u200b", "😀" * 500, "x" * 16_384])),
    )
    texts = [t.encode() for t in draw(st.lists(text, min_size=1, max_size=8))]
    request = ipb.ModelInferRequest(model_name=TINY_MODEL, id=draw(STRINGS))
    tensor = request.inputs.add(name="text", datatype="BYTES", shape=[len(texts)])
    if draw(st.booleans()):
        request.raw_input_contents.append(BytesCodec.encode(texts))
    else:
        tensor.contents.bytes_contents.extend(texts)
    for name in draw(st.lists(st.sampled_from(ALL_OUTPUTS), max_size=3)):
        request.outputs.add(name=name)
    return request


def poisoned(request: apb.AddSamplesRequest, first: bool = False) -> apb.AddSamplesRequest:
    """The batch and a sample whose label the model does not have: the whole batch is refused
    (after the samples before it are checked), so nothing is stored and no fine-tune starts,
    whatever the other samples are. ``first``: where cutting bytes off the end cannot drop it."""
    poison = apb.Sample(text="hello there", label="not-a-label-" + "x" * 40, id="p" * 40)
    request.samples.insert(0 if first else len(request.samples), poison)
    return request


SAMPLES = st.builds(
    apb.Sample,
    text=mix((3, st.text(min_size=1, max_size=40)), (1, STRINGS)),
    label=mix((2, st.sampled_from(TINY_LABELS)), (1, STRINGS)),
    id=STRINGS,
    prediction_id=STRINGS,
)
REQUESTS: dict[str, st.SearchStrategy[Message]] = {
    path: messages(method.input_type) for path, method in METHODS.items()
}
REQUESTS[RPC_PATHS["ModelInfer"]] = mix(
    (1, REQUESTS[RPC_PATHS["ModelInfer"]]), (1, text_requests())
)
_samples = mix(
    (1, REQUESTS[RPC_PATHS["AddSamples"]]),
    (1, st.builds(apb.AddSamplesRequest, model=MODELS, samples=st.lists(SAMPLES, max_size=5))),
)
REQUESTS[RPC_PATHS["AddSamples"]] = _samples.map(poisoned)
DAMAGEABLE = {**REQUESTS, RPC_PATHS["AddSamples"]: _samples.map(lambda r: poisoned(r, first=True))}


@st.composite
def damaged(draw: st.DrawFn, requests: st.SearchStrategy[Message]) -> bytes:
    """A request's bytes, cut, flipped or spliced."""
    wire = bytearray(draw(requests).SerializeToString())
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, len(wire)))
        if action == "flip" and at < len(wire):
            wire[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del wire[at : at + draw(st.integers(1, 16))]
        else:
            wire[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(wire)


FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---- properties of every RPC -------------------------------------------------------------------


@pytest.mark.parametrize("method", list(METHODS))
@FUZZ
@given(data=st.data())
def test_any_request_message_gets_a_deliberate_status(
    open_channel: grpc.Channel, method: str, data: st.DataObject
) -> None:
    payload = data.draw(REQUESTS[method], label="request").SerializeToString()
    check(method, payload, invoke(open_channel, method, payload))


@pytest.mark.parametrize("method", list(METHODS))
@FUZZ
@given(data=st.data())
def test_damaged_and_random_bytes_get_a_deliberate_status(
    open_channel: grpc.Channel, method: str, data: st.DataObject
) -> None:
    payload = data.draw(
        mix((2, damaged(DAMAGEABLE[method])), (1, st.binary(max_size=200))), label="payload"
    )
    check(method, payload, invoke(open_channel, method, payload))


@pytest.mark.parametrize("method", list(METHODS))
def test_undecodable_bytes_are_invalid_argument_naming_the_message_type(
    open_channel: grpc.Channel, method: str
) -> None:
    outcome = invoke(open_channel, method, b"\xff\xff\xff\xff garbage")

    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome
    assert outcome.details == (
        f"the request is not a valid {METHODS[method].input_type.full_name} protobuf"
    )


def test_no_cancelled_watcher_stays_subscribed(open_app: RunningApp) -> None:
    # After the WatchEvents calls above (each cancelled or refused), the event bus is empty.
    events = open_app.app.events
    wait_until(lambda: events.subscriber_count == 0, 5, lambda: events.subscriber_count)


def test_the_fuzzing_stored_no_sample_and_started_no_job(open_app: RunningApp) -> None:
    # What keeps the calls above cheap and independent: every AddSamples batch was refused.
    store = open_app.app.store
    assert store is not None
    assert store.count(TINY_MODEL) == 0
    assert store.latest(TINY_MODEL) is None


def default_request(method: str) -> Message:
    """A request that passes every check but the one a test is about."""
    name = METHODS[method].name
    text = ipb.ModelInferRequest(model_name=TINY_MODEL)
    text.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"hi")
    special: dict[str, Message] = {
        "ModelInfer": text,
        "ModelReady": ipb.ModelReadyRequest(name=TINY_MODEL),
        "ModelMetadata": ipb.ModelMetadataRequest(name=TINY_MODEL),
        "AddSamples": poisoned(apb.AddSamplesRequest(model=TINY_MODEL)),
        "GetJob": apb.GetJobRequest(job_id="1"),
        "Rollback": apb.RollbackRequest(model=TINY_MODEL, version=1),
    }
    if name in special:
        return special[name]
    request = GetMessageClass(METHODS[method].input_type)()
    if "model" in request.DESCRIPTOR.fields_by_name:
        request.model = TINY_MODEL
    return request


ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)  # what gRPC lets a client send
PRESENTED = mix(
    (2, st.sampled_from(SECRETS)),
    (1, st.tuples(st.sampled_from(SECRETS), st.text(ASCII, min_size=1, max_size=3)).map("".join)),
    (2, st.text(ASCII, max_size=40)),
)
AUTHORIZATION = mix(
    (
        3,
        st.tuples(
            st.sampled_from(["Bearer ", "Bearer ", "bearer ", "Basic ", "", "Bearer  "]), PRESENTED
        ).map("".join),
    ),
    (1, st.text(ASCII, max_size=60)),
)
_entry = st.tuples(
    mix((6, st.just("authorization")), (1, st.sampled_from(["x-api-key", "auth"]))), AUTHORIZATION
)
AUTH_METADATA = mix(
    (6, st.lists(_entry, min_size=1, max_size=1)), (1, st.lists(_entry, max_size=3))
)


@settings(max_examples=80, deadline=None)
@given(method=st.sampled_from(list(METHODS)), metadata=AUTH_METADATA)
def test_any_authorization_metadata_gets_a_deliberate_status(
    secured_channel: grpc.Channel, method: str, metadata: list[tuple[str, str]]
) -> None:
    payload = default_request(method).SerializeToString()

    outcome = invoke(secured_channel, method, payload, metadata)

    check(method, payload, outcome)
    for secret in SECRETS:
        assert secret not in outcome.details
    for _, value in metadata:
        presented = value.split(" ")[-1]
        assert len(presented) < 16 or presented not in outcome.details


# ---- the error statuses of every RPC -----------------------------------------------------------
#
# Which statuses each RPC can return: INVALID_ARGUMENT (bytes that are not its request message),
# UNAUTHENTICATED, RESOURCE_EXHAUSTED (a message over the transport limit) and PERMISSION_DENIED
# (but ListModels, which any valid token may call) for all; and the ones below. DEADLINE_EXCEEDED
# before a call starts is one interceptor for every method, tested once:
# tests/api/test_auth.py::test_call_whose_deadline_passed_before_it_started_is_not_run. A model
# still loading (UNAVAILABLE) cannot happen: the app loads its models before it serves.

ALL = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED,
)
NOT_FOUND = grpc.StatusCode.NOT_FOUND
INVALID = grpc.StatusCode.INVALID_ARGUMENT
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
SPECIFIC: dict[str, tuple[grpc.StatusCode, ...]] = {
    "ServerLive": (),
    "ServerReady": (),
    "ServerMetadata": (),
    "ModelReady": (NOT_FOUND,),
    "ModelMetadata": (NOT_FOUND,),
    "ModelInfer": (NOT_FOUND, UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED),
    "ListModels": (),
    "AddSamples": (NOT_FOUND,),
    "ListVersions": (NOT_FOUND,),
    "GetModelStatus": (NOT_FOUND,),
    "StartFineTune": (NOT_FOUND, UNAVAILABLE),
    "GetJob": (NOT_FOUND,),
    "CancelJob": (NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION),
    "Rollback": (NOT_FOUND,),
    "ApproveVersion": (NOT_FOUND, grpc.StatusCode.ABORTED),
    "RejectVersion": (NOT_FOUND,),
    "WatchEvents": (NOT_FOUND, UNAVAILABLE),
    "GetDriftStatus": (NOT_FOUND,),
    "GetLabelingCandidates": (NOT_FOUND,),
    "ListSampleSources": (NOT_FOUND,),
    "PurgeSamples": (NOT_FOUND,),
}


def error_statuses(rpc: str) -> set[grpc.StatusCode]:
    statuses = {*ALL, *SPECIFIC[rpc]}
    if rpc == "ListModels":
        statuses.discard(grpc.StatusCode.PERMISSION_DENIED)
    return statuses


SERVER = "tests/api/test_server.py::"
ADAPT = "tests/api/test_adaptation_api.py::"
AUTH = "tests/api/test_auth.py::"
LIMITS = "tests/adaptation/test_input_limits.py::"
RACES = "tests/adaptation/test_job_races.py::"
HERE = "tests/api/test_fuzz_rpcs.py::"
REVIEW = "tests/adaptation/test_review.py::"
CANCEL = "tests/adaptation/test_cancel.py::"
UNDECODABLE = HERE + "test_undecodable_bytes_are_invalid_argument_naming_the_message_type"
# (RPC, status) pairs that another test asserts with code and message.
COVERED_ELSEWHERE: dict[tuple[str, grpc.StatusCode], str] = {
    **{
        (rpc, INVALID): UNDECODABLE
        for rpc in ("ServerLive", "ServerReady", "ServerMetadata", "ListModels")
    },
    ("ModelReady", NOT_FOUND): SERVER + "test_unknown_model_and_version_are_not_found",
    ("ModelReady", INVALID): SERVER
    + "test_a_100kb_model_name_in_metadata_calls_is_invalid_argument",
    ("ModelMetadata", NOT_FOUND): SERVER + "test_unknown_model_and_version_are_not_found",
    ("ModelMetadata", INVALID): SERVER
    + "test_a_100kb_model_name_in_metadata_calls_is_invalid_argument",
    ("ModelInfer", NOT_FOUND): SERVER + "test_unknown_model_and_version_are_not_found",
    ("ModelInfer", INVALID): SERVER + "test_malformed_requests_are_invalid_argument",
    ("ModelInfer", UNAVAILABLE): "tests/test_app.py::"
    "test_stop_drains_admitted_requests_and_refuses_new_ones",
    ("ModelInfer", grpc.StatusCode.RESOURCE_EXHAUSTED): SERVER
    + "test_a_60mb_request_delays_others_by_at_most_100ms",
    ("ModelInfer", grpc.StatusCode.DEADLINE_EXCEEDED): SERVER
    + "test_a_request_already_past_its_deadline_is_not_run",
    ("ListModels", grpc.StatusCode.UNAUTHENTICATED): AUTH
    + "test_missing_token_says_how_to_send_one",
    ("AddSamples", NOT_FOUND): ADAPT + "test_add_samples_errors_map_to_statuses",
    ("AddSamples", INVALID): ADAPT + "test_add_samples_errors_map_to_statuses",
    ("AddSamples", grpc.StatusCode.PERMISSION_DENIED): AUTH
    + "test_token_without_the_scope_is_permission_denied_naming_the_scope",
    ("ListVersions", NOT_FOUND): ADAPT + "test_client_raises_client_error_with_the_code_name",
    ("ListVersions", INVALID): LIMITS
    + "test_a_100kb_model_name_is_invalid_argument_with_a_short_message",
    ("GetModelStatus", NOT_FOUND): ADAPT + "test_model_status",
    ("GetModelStatus", INVALID): LIMITS
    + "test_a_100kb_model_name_is_invalid_argument_with_a_short_message",
    ("StartFineTune", NOT_FOUND): ADAPT
    + "test_start_fine_tune_returns_the_active_job_and_get_job_finds_it",
    ("StartFineTune", INVALID): RACES
    + "test_invalid_start_fine_tune_is_refused_with_a_short_message",
    ("StartFineTune", UNAVAILABLE): RACES + "test_stop_refuses_new_jobs_as_unavailable",
    ("GetJob", NOT_FOUND): ADAPT
    + "test_start_fine_tune_returns_the_active_job_and_get_job_finds_it",
    ("GetJob", INVALID): RACES + "test_invalid_start_fine_tune_is_refused_with_a_short_message",
    ("Rollback", NOT_FOUND): ADAPT + "test_rollback",
    ("Rollback", INVALID): ADAPT + "test_rollback",
    ("Rollback", grpc.StatusCode.PERMISSION_DENIED): AUTH
    + "test_token_without_the_scope_is_permission_denied_naming_the_scope",
    **{
        (rpc, code): REVIEW + "test_approve_and_reject_errors_map_to_statuses"
        for rpc in ("ApproveVersion", "RejectVersion")
        for code in (NOT_FOUND, INVALID)
    },
    ("ApproveVersion", grpc.StatusCode.ABORTED): REVIEW
    + "test_approve_and_reject_errors_map_to_statuses",
    ("WatchEvents", NOT_FOUND): ADAPT
    + "test_watch_events_errors_before_the_first_event_map_to_statuses",
    ("WatchEvents", UNAVAILABLE): ADAPT + "test_watch_events_errors_after_events_map_to_statuses",
    ("GetLabelingCandidates", INVALID): ADAPT + "test_labeling_candidates",
    ("ListSampleSources", NOT_FOUND): ADAPT + "test_list_sample_sources",
    ("PurgeSamples", INVALID): ADAPT
    + "test_purge_samples_refuses_a_bad_request_before_the_core_sees_it",
    ("CancelJob", grpc.StatusCode.FAILED_PRECONDITION): CANCEL
    + "test_a_cancel_through_a_replica_stops_the_job_at_the_trainers_next_poll",
}


@dataclass(frozen=True)
class Case:
    rpc: str
    code: grpc.StatusCode
    message: str  # in the details
    request: Message | bytes | None = None  # None: default_request
    token: str | None = "operator"  # whose token the call carries (None: no token)

    @property
    def id(self) -> str:
        return f"{self.rpc}-{self.code.name}"


SCOPE_MISSING = {"infer": "labeler", "label": "reader", "admin": "labeler"}  # a token without it
OVERSIZED = b"\x00" * (MAX_MESSAGE_BYTES + 1)
LONG_NAME = "m" * 100_000
UNKNOWN_MODEL = f"unknown model 'nope'; this server serves '{TINY_MODEL}'"
# The pairs no other test covers (code and message), on the real app with tokens.
ALL_TABLE: list[Case] = [
    *(
        Case(
            rpc, grpc.StatusCode.UNAUTHENTICATED, "this server requires a bearer token", token=None
        )
        for rpc in RPC_PATHS
        if rpc != "ListModels"
    ),
    *(
        Case(
            rpc,
            grpc.StatusCode.PERMISSION_DENIED,
            f"lacks the scope {scope.value!r} needed for {RPC_PATHS[rpc]}",
            token=SCOPE_MISSING[scope.value],
        )
        for rpc in RPC_PATHS
        if rpc not in ("ListModels", "AddSamples", "Rollback")
        and (scope := METHOD_SCOPES[RPC_PATHS[rpc]]) is not None
    ),
    *(
        Case(rpc, grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max", OVERSIZED)
        for rpc in RPC_PATHS
        if rpc != "ModelInfer"
    ),
    Case("GetDriftStatus", NOT_FOUND, UNKNOWN_MODEL, apb.GetDriftStatusRequest(model="nope")),
    Case(
        "GetLabelingCandidates",
        NOT_FOUND,
        UNKNOWN_MODEL,
        apb.GetLabelingCandidatesRequest(model="nope"),
    ),
    *(
        Case(
            rpc,
            INVALID,
            "model name 'mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm…' (100000 characters) is too long",
            request,
        )
        for rpc, request in (
            ("GetDriftStatus", apb.GetDriftStatusRequest(model=LONG_NAME)),
            ("WatchEvents", apb.WatchEventsRequest(model=LONG_NAME)),
            ("ListSampleSources", getattr(apb, "ListSampleSourcesRequest", dict)(model=LONG_NAME)),
            ("CancelJob", getattr(apb, "CancelJobRequest", dict)(model=LONG_NAME)),
        )
    ),
    Case(
        "PurgeSamples",
        NOT_FOUND,
        UNKNOWN_MODEL,
        getattr(apb, "PurgeSamplesRequest", dict)(model="nope", source="junk"),
    ),
    Case(
        "CancelJob",
        NOT_FOUND,
        UNKNOWN_MODEL,
        getattr(apb, "CancelJobRequest", dict)(model="nope", job_id="job-1"),
    ),
]
TABLE = [case for case in ALL_TABLE if case.rpc in RPC_PATHS]  # the RPCs this checkout has


@pytest.mark.parametrize("case", TABLE, ids=lambda case: case.id)
def test_each_rpc_answers_each_of_its_error_statuses(
    secured_channel: grpc.Channel, case: Case
) -> None:
    path = RPC_PATHS[case.rpc]
    request = default_request(path) if case.request is None else case.request
    payload = request if isinstance(request, bytes) else request.SerializeToString()
    metadata = [] if case.token is None else [("authorization", f"Bearer {TOKENS[case.token][1]}")]

    outcome = invoke(secured_channel, path, payload, metadata, timeout=20, window=20)

    assert outcome.code == case.code, outcome
    assert case.message in outcome.details, outcome
    assert len(outcome.details) < MAX_MESSAGE


def test_every_rpc_has_a_test_for_each_of_its_error_statuses() -> None:
    assert set(RPC_PATHS) <= set(SPECIFIC), "a new RPC: list its error statuses in SPECIFIC"
    tabled = {(case.rpc, case.code) for case in TABLE}
    assert not tabled & set(COVERED_ELSEWHERE), "a pair is in the table and covered elsewhere"
    missing = [
        (rpc, code.name)
        for rpc in RPC_PATHS
        for code in error_statuses(rpc)
        if (rpc, code) not in tabled and (rpc, code) not in COVERED_ELSEWHERE
    ]
    assert not missing, f"(RPC, status) pairs without a test: {missing}"
    for pointer in {p for (rpc, _), p in COVERED_ELSEWHERE.items() if rpc in RPC_PATHS}:
        path, _, name = pointer.partition("::")
        assert f"def {name}(" in (ROOT / path).read_text(), f"{pointer} does not exist"


# ---- bugs these tests found, fixed: each answered with its status and a short message ----------


def test_an_empty_shape_with_a_dimension_above_the_limit_is_invalid_argument(
    open_channel: grpc.Channel,
) -> None:
    # 0 elements pass every count limit, but numpy cannot lay out such a shape (it was INTERNAL).
    request = ipb.ModelInferRequest(model_name=TINY_MODEL)
    request.inputs.add(name="text", datatype="FP32", shape=[0, 2**32, 2**32])

    outcome = invoke(open_channel, RPC_PATHS["ModelInfer"], request.SerializeToString())

    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome
    assert (
        "input 'text' has a dimension above 2147483647 in shape [0, 4294967296, 4294967296]"
        in outcome.details
    ), outcome
    assert len(outcome.details) < MAX_MESSAGE, len(outcome.details)


def many_long_names(field: str) -> ipb.ModelInferRequest:
    """16 input tensors (empty, well formed) or 16 unknown outputs, each named with 128
    characters that repr() escapes (1290 characters each when they were listed whole)."""
    request = ipb.ModelInferRequest(model_name=TINY_MODEL)
    names = ["\U000e0001" * (MAX_IDENTIFIER_CHARS - 1) + chr(65 + i) for i in range(16)]
    if field == "inputs":
        for name in names:
            request.inputs.add(name=name, datatype="BYTES", shape=[0])
    else:
        request.inputs.add(name="text", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
            b"hello"
        )
        for name in names:
            request.outputs.add(name=name)
    return request


@pytest.mark.parametrize(
    ("field", "listed"), [("inputs", "got input tensor(s) '"), ("outputs", "unknown output(s) '")]
)
def test_many_long_tensor_names_are_invalid_argument_with_a_short_message(
    open_channel: grpc.Channel, field: str, listed: str
) -> None:
    # Listed whole, the names made a 20 KB message: over gRPC's 16 KB trailer limit, the caller
    # got RESOURCE_EXHAUSTED instead. Now three are shown, each cut short.
    outcome = invoke(
        open_channel, RPC_PATHS["ModelInfer"], many_long_names(field).SerializeToString()
    )

    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome.details
    assert outcome.details.startswith(listed + "\\U000e0001"), outcome.details
    assert outcome.details.count("…' (128 characters)") == 3, outcome.details
    assert "(128 characters) and 13 more; " in outcome.details, outcome.details
    assert len(outcome.details) < MAX_MESSAGE, len(outcome.details)


def test_an_unknown_escaped_job_id_is_quoted_truncated(open_channel: grpc.Channel) -> None:
    request = apb.GetJobRequest(job_id="\U000e0001" * MAX_IDENTIFIER_CHARS)

    outcome = invoke(open_channel, RPC_PATHS["GetJob"], request.SerializeToString())

    assert outcome.code == grpc.StatusCode.NOT_FOUND, outcome
    assert outcome.details.startswith("no job '\\U000e0001"), outcome.details
    assert outcome.details.endswith("…' (128 characters)"), outcome.details
    assert len(outcome.details) < MAX_MESSAGE, len(outcome.details)


def test_a_conflicting_escaped_sample_id_is_quoted_truncated(open_channel: grpc.Channel) -> None:
    sample_id = "\U000e0001" * MAX_IDENTIFIER_CHARS
    request = apb.AddSamplesRequest(
        model=TINY_MODEL,
        samples=[
            apb.Sample(text="hello there", label=TINY_LABELS[0], id=sample_id),
            apb.Sample(text="hello there", label=TINY_LABELS[1], id=sample_id),
        ],
    )  # refused as a whole: nothing is stored

    outcome = invoke(open_channel, RPC_PATHS["AddSamples"], request.SerializeToString())

    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome
    assert outcome.details.startswith("sample id '\\U000e0001"), outcome.details
    assert "…' (128 characters) of model " in outcome.details, outcome.details
    assert "with a different text or label; nothing from this batch was stored" in (
        outcome.details
    ), outcome.details
    assert len(outcome.details) < MAX_MESSAGE, len(outcome.details)
