"""Property tests (hypothesis) over the converters and the request validation, no server.

Whatever a caller sends, decoding and validating it either gives a well-formed request or raises
a :mod:`service.errors` kind that maps to a status other than INTERNAL, with a short message;
what the server encodes decodes back to the same values. Over gRPC: tests/api/test_fuzz_rpcs.py.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import struct
from math import prod
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service.api import adaptation_converters
from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.loopserve.v1 import adaptation_pb2 as apb
from service.api.adaptation_converters import (
    AddSamplesRequestConverter,
    AddSamplesResponseConverter,
    DriftStatusConverter,
    EventConverter,
    GateResultConverter,
    GetLabelingCandidatesResponseConverter,
    JobConverter,
    ListVersionsResponseConverter,
    ModelStatusConverter,
    VersionConverter,
    numeric_metrics,
)
from service.api.converters import (
    MAX_DIMS,
    MAX_PARAMETERS,
    MAX_TENSORS,
    BytesCodec,
    DecodeLimits,
    InferParameterConverter,
    ModelInferRequestConverter,
    ModelInferResponseConverter,
    ModelMetadataResponseConverter,
)
from service.api.status import status_for
from service.domain import loop as adaptation_types
from service.domain.loop import (
    MAX_SAMPLES_PER_CALL,
    AddOutcome,
    Event,
    EventKind,
    GateResult,
    Job,
    JobState,
    ModelStatus,
    NewSample,
    VersionSummary,
)
from service.domain.review import LabelChange, ReviewEvidence
from service.drift import Candidate, DetectorState, DetectorStatus, DriftStatus
from service.errors import MAX_IDENTIFIER_CHARS, InvalidInput, LoopserveError
from service.tasks import ClassifierOutputs, RequestLimits
from service.tasks.text import TextInputs
from service.types import (
    DATATYPE_TO_NUMPY,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Tensor,
    TensorSpec,
)

# Error messages travel back in the status trailer and into the log: short whatever the input.
# Hundreds of generated requests per property: `make test` runs them, `make test-fast` not.
pytestmark = pytest.mark.slow

MAX_MESSAGE = 400


def mix(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each drawn about as often as its weight says (``st.one_of`` draws
    every branch about as often, duplicates too)."""
    indices = [i for i, (weight, _) in enumerate(choices) for _ in range(weight)]
    return st.sampled_from(indices).flatmap(lambda i: choices[i][1])


def sometimes(
    common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], odds: int
) -> st.SearchStrategy[Any]:
    """``rare`` about once in ``odds + 1`` draws."""
    return mix((odds, common), (1, rare))


V2_DATATYPES = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES", "BF16",
]  # fmt: skip
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
INT64 = st.integers(-(2**63), 2**63 - 1)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "bool_contents": st.booleans(),
    "int_contents": st.integers(-(2**31), 2**31 - 1),
    "int64_contents": INT64,
    "uint_contents": st.integers(0, 2**32 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1),
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
    "bytes_contents": st.binary(max_size=24),
}
# The values of each typed datatype that its numpy dtype holds (the property of typed ⇄ raw).
IN_RANGE: dict[str, st.SearchStrategy[Any]] = {
    "BOOL": st.booleans(),
    "INT8": st.integers(-(2**7), 2**7 - 1),
    "INT16": st.integers(-(2**15), 2**15 - 1),
    "INT32": st.integers(-(2**31), 2**31 - 1),
    "INT64": INT64,
    "UINT8": st.integers(0, 2**8 - 1),
    "UINT16": st.integers(0, 2**16 - 1),
    "UINT32": st.integers(0, 2**32 - 1),
    "UINT64": st.integers(0, 2**64 - 1),
    "FP32": st.floats(width=32),
    "FP64": st.floats(),
}
SPECIAL_STRINGS = [
    "",
    "text",
    " ",
    "\x00",
    "\u202etxet",
    "😀" * 40,
    "\U000e0001" * MAX_IDENTIFIER_CHARS,  # every character escaped by repr()
    "n" * MAX_IDENTIFIER_CHARS,
    "n" * (MAX_IDENTIFIER_CHARS + 1),
    "é" * 3000,
    "x" * 100_000,
]
STRINGS = mix(
    (1, st.sampled_from(SPECIAL_STRINGS)),
    (3, st.text(max_size=12)),
    (1, st.text(min_size=100, max_size=200)),
)
NAMES = sometimes(st.sampled_from(["text", "text", "label", "x"]), STRINGS, odds=1)
DATATYPES = st.one_of(st.sampled_from(V2_DATATYPES), st.text(max_size=30))
DIMS = st.one_of(st.integers(-2, 6), INT64, st.sampled_from([0, 2**31, 2**63 - 1, -(2**63)]))
SHAPES = st.lists(DIMS, max_size=MAX_DIMS + 2)
LIMITS = st.one_of(
    st.none(),
    st.just(DecodeLimits(64, 16_384)),  # the tiny model's, as admit() returns them
    st.builds(DecodeLimits, st.integers(0, 70), st.integers(0, 64)),
)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_refusal(error: LoopserveError) -> None:
    """A deliberate refusal: a status other than INTERNAL and a short, non-empty message."""
    assert status_for(error) not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    message = str(error)
    assert message.strip()
    assert len(message) < MAX_MESSAGE, (len(message), message)


# ---- strategies --------------------------------------------------------------------------------


def parameters() -> st.SearchStrategy[pb.InferParameter]:
    return st.one_of(
        st.just(pb.InferParameter()),
        st.builds(pb.InferParameter, bool_param=st.booleans()),
        st.builds(pb.InferParameter, int64_param=INT64),
        st.builds(pb.InferParameter, string_param=STRINGS),
        st.builds(pb.InferParameter, double_param=st.floats()),
        st.builds(pb.InferParameter, uint64_param=st.integers(0, 2**64 - 1)),
    )


def parameter_maps() -> st.SearchStrategy[dict[str, pb.InferParameter]]:
    few = st.dictionaries(STRINGS, parameters(), max_size=3)
    too_many = st.dictionaries(
        st.text(min_size=1, max_size=8), st.just(pb.InferParameter()),
        min_size=MAX_PARAMETERS + 1, max_size=MAX_PARAMETERS + 3,
    )  # fmt: skip
    return sometimes(few, too_many, odds=30)


@st.composite
def length_prefixed(draw: st.DrawFn) -> bytes:
    """Valid BYTES raw contents, or a valid encoding cut short or with a lying length."""
    raw = BytesCodec.encode(draw(st.lists(st.binary(max_size=16), max_size=8)))
    damage = draw(st.sampled_from(["none", "none", "cut", "overrun", "junk"]))
    if damage == "cut" and raw:
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if damage == "overrun":
        return raw + struct.pack("<I", draw(st.integers(1, 2**32 - 1))) + b"x"
    if damage == "junk":
        return raw + draw(st.binary(min_size=1, max_size=3))
    return raw


RAW_CONTENTS = st.one_of(
    st.binary(max_size=64),
    length_prefixed(),
    st.integers(0, 8).flatmap(lambda n: st.binary(min_size=n * 8, max_size=n * 8)),
)


@st.composite
def input_tensors(draw: st.DrawFn) -> pb.ModelInferRequest.InferInputTensor:
    mode = draw(st.sampled_from(["matching", "matching", "random", "empty"]))
    if mode == "matching":  # typed contents that fit the declared shape: the accepted path
        datatype = draw(st.sampled_from(sorted(CONTENTS_FIELD)))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
    else:
        datatype, shape = draw(DATATYPES), draw(SHAPES)
    tensor = pb.ModelInferRequest.InferInputTensor(
        name=draw(NAMES), datatype=datatype, shape=shape, parameters=draw(parameter_maps())
    )
    if mode == "matching":
        field = CONTENTS_FIELD[datatype]
        count = prod(shape)
        values = draw(st.lists(FIELD_VALUES[field], min_size=count, max_size=count))
        getattr(tensor.contents, field).extend(values)
    elif mode == "random":
        for field in draw(st.lists(st.sampled_from(list(FIELD_VALUES)), max_size=2, unique=True)):
            getattr(tensor.contents, field).extend(draw(st.lists(FIELD_VALUES[field], max_size=6)))
    return tensor


@st.composite
def infer_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    inputs = draw(
        sometimes(
            st.lists(input_tensors(), max_size=3),
            st.lists(input_tensors(), min_size=MAX_TENSORS - 1, max_size=MAX_TENSORS + 2),
            odds=8,
        )
    )
    request = pb.ModelInferRequest(
        model_name=draw(STRINGS),
        model_version=draw(STRINGS),
        id=draw(STRINGS),
        inputs=inputs,
        parameters=draw(parameter_maps()),
    )
    outputs = draw(
        sometimes(
            st.lists(NAMES, max_size=3),
            st.lists(st.just("label"), min_size=MAX_TENSORS + 1, max_size=MAX_TENSORS + 2),
            odds=15,
        )
    )
    request.outputs.extend(pb.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in outputs)
    raw = draw(st.sampled_from(["none", "none", "aligned", "any"]))
    if raw == "aligned":  # one per input, as the protocol wants
        request.raw_input_contents.extend(draw(RAW_CONTENTS) for _ in inputs)
        for tensor in request.inputs:
            if draw(st.booleans()):
                tensor.ClearField("contents")
    elif raw == "any":
        request.raw_input_contents.extend(draw(st.lists(RAW_CONTENTS, max_size=MAX_TENSORS + 2)))
    return request


# ---- ModelInferRequestConverter.to_types: any request ------------------------------------------


def decode_or_refuse(request: pb.ModelInferRequest, limits: DecodeLimits | None) -> None:
    """The property: a well-formed InferenceRequest, or a deliberate refusal."""
    try:
        decoded = ModelInferRequestConverter.to_types(request, limits)
    except LoopserveError as error:
        check_refusal(error)
        return
    assert (decoded.model, decoded.version, decoded.id) == (
        request.model_name,
        request.model_version,
        request.id,
    )
    assert decoded.outputs == [o.name for o in request.outputs]
    assert len(decoded.inputs) == len(request.inputs)
    for tensor, message in zip(decoded.inputs, request.inputs, strict=True):
        assert (tensor.name, tensor.datatype, tensor.shape) == (
            message.name,
            message.datatype,
            tuple(message.shape),
        )
        assert all(d >= 0 for d in tensor.shape)
        if tensor.datatype == "BYTES":
            assert isinstance(tensor.data, list) and len(tensor.data) == prod(tensor.shape)
            assert all(isinstance(item, bytes) for item in tensor.data)
        else:
            assert isinstance(tensor.data, np.ndarray)
            assert tensor.data.dtype == DATATYPE_TO_NUMPY[tensor.datatype]
            assert tensor.data.shape == tensor.shape
        if limits is not None:  # the limits bound what was decoded
            assert prod(tensor.shape) <= limits.max_elements
    if limits is not None:
        assert len(request.inputs) <= MAX_TENSORS and len(request.outputs) <= MAX_TENSORS
        assert len(request.parameters) <= MAX_PARAMETERS
        for message in request.inputs:
            assert len(message.name) <= MAX_IDENTIFIER_CHARS


@FAST
@given(request=infer_requests(), limits=LIMITS)
def test_any_infer_request_decodes_or_is_refused_with_a_short_message(
    request: pb.ModelInferRequest, limits: DecodeLimits | None
) -> None:
    decode_or_refuse(request, limits)


@FAST
@given(request=infer_requests(), limits=LIMITS, data=st.data())
def test_damaged_request_bytes_decode_or_are_refused(
    request: pb.ModelInferRequest, limits: DecodeLimits | None, data: st.DataObject
) -> None:
    """The bytes of a request, cut, flipped or spliced: protobuf refuses them (the interceptor
    answers INVALID_ARGUMENT) or they parse into a request the converter handles."""
    wire = bytearray(request.SerializeToString())
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, len(wire)))
        if action == "flip" and at < len(wire):
            wire[at] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del wire[at : at + data.draw(st.integers(1, 16))]
        else:
            wire[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    try:
        parsed = pb.ModelInferRequest.FromString(bytes(wire))
    except DecodeError:
        return
    decode_or_refuse(parsed, limits)


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=256), limits=LIMITS)
def test_arbitrary_bytes_decode_or_are_refused(raw: bytes, limits: DecodeLimits | None) -> None:
    try:
        parsed = pb.ModelInferRequest.FromString(raw)
    except DecodeError:
        return
    decode_or_refuse(parsed, limits)


# ---- validation after decoding: the text classifier's contract ---------------------------------

CONTRACT = TextInputs(RequestLimits(max_elements=64, max_element_bytes=16_384))
OUTPUTS = ClassifierOutputs()


@st.composite
def text_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    """Requests shaped like the contract's (a BYTES input named 'text'), texts of any bytes."""
    text = mix(
        (8, st.text(max_size=40).map(lambda t: f"w{t}".encode())),
        (1, st.binary(max_size=40)),
        (1, st.sampled_from([b"", b"   ", b"\xff\xfe", "😀".encode(), b"x" * 16_385])),
    )
    texts = draw(st.lists(text, max_size=70))
    request = pb.ModelInferRequest(model_name="tiny")
    shapes = st.sampled_from([[len(texts), 1], [1, len(texts)], [len(texts), 2]])
    shape = draw(sometimes(st.just([len(texts)]), shapes, odds=6))
    name = draw(sometimes(st.just("text"), st.sampled_from(["Text", "texts"]), odds=8))
    tensor = request.inputs.add(name=name, shape=shape)
    tensor.datatype = draw(sometimes(st.just("BYTES"), st.just("FP32"), odds=8))
    if draw(st.booleans()):
        request.raw_input_contents.append(BytesCodec.encode(texts))
    else:
        tensor.contents.bytes_contents.extend(texts)
    output = sometimes(st.sampled_from(["label", "probabilities", "embedding"]), st.text(), odds=10)
    for name in draw(st.lists(output, max_size=4)):
        request.outputs.add(name=name)
    return request


def validate_or_refuse(request: pb.ModelInferRequest, limits: DecodeLimits | None) -> None:
    try:
        decoded = ModelInferRequestConverter.to_types(request, limits)
        texts = CONTRACT.decode(decoded.inputs)
        wanted = OUTPUTS.requested_outputs(decoded.outputs)
    except LoopserveError as error:
        check_refusal(error)
        return
    assert 1 <= len(texts) <= CONTRACT.limits.max_elements
    assert all(t.strip() and len(t.encode()) <= CONTRACT.limits.max_element_bytes for t in texts)
    assert wanted and set(wanted) <= {"label", "probabilities", "embedding"}


@FAST
@given(request=st.one_of(text_requests(), infer_requests()), limits=LIMITS)
def test_any_request_passes_the_contract_or_is_refused_with_a_short_message(
    request: pb.ModelInferRequest, limits: DecodeLimits | None
) -> None:
    validate_or_refuse(request, limits)


# ---- typed and raw contents agree --------------------------------------------------------------


@st.composite
def typed_values(draw: st.DrawFn) -> tuple[str, list[int], list[Any]]:
    datatype = draw(st.sampled_from(sorted(IN_RANGE)))
    shape = draw(st.lists(st.integers(0, 4), max_size=3))
    values = draw(st.lists(IN_RANGE[datatype], min_size=prod(shape), max_size=prod(shape)))
    return datatype, shape, values


@FAST
@given(case=typed_values())
def test_typed_and_raw_contents_decode_to_the_same_array(
    case: tuple[str, list[int], list[Any]],
) -> None:
    datatype, shape, values = case
    typed = pb.ModelInferRequest()
    tensor = typed.inputs.add(name="x", datatype=datatype, shape=shape)
    getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(values)
    raw = pb.ModelInferRequest()
    raw.inputs.add(name="x", datatype=datatype, shape=shape)
    dtype = DATATYPE_TO_NUMPY[datatype].newbyteorder("<")
    raw.raw_input_contents.append(np.asarray(values, dtype=dtype).tobytes())
    limits = DecodeLimits(64, 16)

    (from_typed,) = ModelInferRequestConverter.to_types(typed, limits).inputs
    (from_raw,) = ModelInferRequestConverter.to_types(raw, limits).inputs

    assert isinstance(from_typed.data, np.ndarray) and isinstance(from_raw.data, np.ndarray)
    assert from_typed.data.dtype == from_raw.data.dtype == DATATYPE_TO_NUMPY[datatype]
    assert from_typed.data.shape == from_raw.data.shape == tuple(shape)
    assert from_typed.data.tobytes() == from_raw.data.tobytes()  # NaNs and -0.0 too


# ---- round trips: what is encoded decodes to the same values ------------------------------------

NUMERIC_DTYPES = sorted(DATATYPE_TO_NUMPY)


@st.composite
def tensors(draw: st.DrawFn, with_parameters: bool = True) -> Tensor:
    name = draw(st.text(max_size=20))
    params = draw(plain_parameters()) if with_parameters else {}
    datatype = draw(st.sampled_from([*NUMERIC_DTYPES, "BYTES"]))
    if datatype == "BYTES":
        items = draw(st.lists(st.binary(max_size=20), max_size=6))
        return Tensor(name, "BYTES", (len(items),), items, params)
    array = draw(
        hnp.arrays(
            DATATYPE_TO_NUMPY[datatype], hnp.array_shapes(min_dims=0, max_dims=3, min_side=0)
        )
    )
    return Tensor(name, datatype, array.shape, array, params)


def plain_parameters() -> st.SearchStrategy[dict[str, Any]]:
    values = st.one_of(st.booleans(), INT64, st.floats(), st.text(max_size=20))
    return st.dictionaries(st.text(max_size=10), values, max_size=4)


def same_tensor(decoded: Tensor, original: Tensor) -> None:
    assert (decoded.name, decoded.datatype, decoded.shape) == (
        original.name,
        original.datatype,
        original.shape,
    )
    assert norm(decoded.parameters) == norm(original.parameters)
    if isinstance(original.data, list):
        assert decoded.data == original.data
    else:
        assert isinstance(decoded.data, np.ndarray)
        assert decoded.data.dtype == original.data.dtype
        assert decoded.data.tobytes() == np.ascontiguousarray(original.data).tobytes()


def wire(message: Any) -> Any:
    """As the message arrives at the other end."""
    return type(message).FromString(message.SerializeToString())


@FAST
@given(
    inputs=st.lists(tensors(with_parameters=False), max_size=4),
    outputs=st.lists(st.text(max_size=20), max_size=4),
    params=plain_parameters(),
    names=st.tuples(st.text(), st.text(), st.text()),
)
def test_infer_request_round_trips(
    inputs: list[Tensor], outputs: list[str], params: dict[str, Any], names: tuple[str, str, str]
) -> None:
    # Per-input parameters are not encoded by from_types (the client never sets them).
    request = InferenceRequest(*names, inputs=inputs, outputs=outputs, parameters=params)

    decoded = ModelInferRequestConverter.to_types(
        wire(ModelInferRequestConverter.from_types(request))
    )

    assert (decoded.model, decoded.version, decoded.id) == names
    assert decoded.outputs == outputs and norm(decoded.parameters) == norm(params)
    assert len(decoded.inputs) == len(inputs)
    for got, sent in zip(decoded.inputs, inputs, strict=True):
        same_tensor(got, sent)


@FAST
@given(outputs=st.lists(tensors(), max_size=4), names=st.tuples(st.text(), st.text(), st.text()))
def test_infer_response_round_trips(outputs: list[Tensor], names: tuple[str, str, str]) -> None:
    response = InferenceResponse(*names, outputs=outputs)

    decoded = ModelInferResponseConverter.to_types(
        wire(ModelInferResponseConverter.from_types(response))
    )

    assert (decoded.model, decoded.version, decoded.id) == names
    assert len(decoded.outputs) == len(outputs)
    for got, sent in zip(decoded.outputs, outputs, strict=True):
        same_tensor(got, sent)


SPECS = st.builds(
    TensorSpec, st.text(max_size=20), st.sampled_from(V2_DATATYPES), st.lists(INT64).map(tuple)
)


@FAST
@given(
    metadata=st.builds(
        ModelMetadata,
        name=st.text(),
        versions=st.lists(st.text(max_size=5)),
        platform=st.text(),
        inputs=st.lists(SPECS, max_size=3),
        outputs=st.lists(SPECS, max_size=3),
        properties=st.dictionaries(st.text(), st.text(), max_size=4),
    )
)
def test_model_metadata_round_trips(metadata: ModelMetadata) -> None:
    converted = ModelMetadataResponseConverter.from_types(metadata)
    assert ModelMetadataResponseConverter.to_types(wire(converted)) == metadata


@FAST
@given(params=plain_parameters())
def test_parameters_round_trip(params: dict[str, Any]) -> None:
    message = pb.ModelInferRequest()
    InferParameterConverter.from_types(params, message.parameters)
    decoded = InferParameterConverter.to_types(wire(message).parameters)
    assert norm(decoded) == norm(params)
    assert [type(decoded[k]) for k in params] == [type(v) for v in params.values()]


# ---- BytesCodec ---------------------------------------------------------------------------------


@FAST
@given(items=st.lists(st.binary(max_size=40), max_size=20), max_items=st.integers(0, 25))
def test_bytes_codec_round_trips_and_stops_at_the_count(items: list[bytes], max_items: int) -> None:
    raw = BytesCodec.encode(items)
    assert BytesCodec.decode(raw, "t") == items
    assert BytesCodec.split(raw, "t", max_items) == (items[:max_items], len(items) <= max_items)


@FAST
@given(
    raw=st.one_of(st.binary(max_size=80), length_prefixed()),
    max_items=st.none() | st.integers(0, 9),
)
def test_bytes_codec_decodes_any_buffer_exactly_or_refuses_it(
    raw: bytes, max_items: int | None
) -> None:
    try:
        items = BytesCodec.decode(raw, "t" * 1000, max_items)
    except InvalidInput as error:
        check_refusal(error)
        return
    assert BytesCodec.encode(items) == raw  # nothing skipped, nothing invented
    assert max_items is None or len(items) <= max_items


# ---- the adaptation converters that take caller input ------------------------------------------

SAMPLES = st.builds(apb.Sample, text=STRINGS, label=STRINGS, id=STRINGS, prediction_id=STRINGS)


@FAST
@given(
    model=STRINGS,
    samples=st.lists(SAMPLES, max_size=12),
    max_samples=st.one_of(st.none(), st.integers(0, 12), st.just(MAX_SAMPLES_PER_CALL)),
)
def test_any_add_samples_request_converts_or_is_refused(
    model: str, samples: list[apb.Sample], max_samples: int | None
) -> None:
    request = wire(apb.AddSamplesRequest(model=model, samples=samples))
    try:
        got_model, got = AddSamplesRequestConverter.to_types(request, max_samples)
    except LoopserveError as error:
        check_refusal(error)
        assert max_samples is not None and len(samples) > max_samples
        return
    assert max_samples is None or len(samples) <= max_samples
    assert got_model == model
    assert got == [NewSample(s.text, s.label, s.id, s.prediction_id) for s in samples]


def test_more_samples_than_the_servicer_allows_are_refused_before_conversion() -> None:
    request = apb.AddSamplesRequest(model="m", samples=[apb.Sample(text="t")] * 1001)
    with pytest.raises(InvalidInput, match=r"^1001 samples in one call; at most 1000$"):
        AddSamplesRequestConverter.to_types(request, MAX_SAMPLES_PER_CALL)


NEW_SAMPLES = st.builds(NewSample, st.text(), st.text(), st.text(), st.text())


@FAST
@given(model=st.text(), samples=st.lists(NEW_SAMPLES, max_size=8))
def test_add_samples_request_round_trips(model: str, samples: list[NewSample]) -> None:
    message = wire(AddSamplesRequestConverter.from_types(model, samples))
    assert AddSamplesRequestConverter.to_types(message, MAX_SAMPLES_PER_CALL) == (model, samples)


# PurgeSamples arrived with provenance; looked up so that this file still runs without it.
PURGE = getattr(adaptation_converters, "PurgeSamplesRequestConverter", None)
needs_purge = pytest.mark.skipif(PURGE is None, reason="no PurgeSamples in this checkout")


@needs_purge
@FAST
@given(
    model=STRINGS,
    source=STRINGS,
    since=st.none() | st.floats(),
)
def test_any_purge_request_converts_or_is_refused_before_anything_is_deleted(
    model: str, source: str, since: float | None
) -> None:
    request = wire(apb.PurgeSamplesRequest(model=model, source=source, since=since))
    try:
        converted = PURGE.to_types(request)
    except LoopserveError as error:
        check_refusal(error)
        assert not source or len(source) > MAX_IDENTIFIER_CHARS or not math.isfinite(since or 0)
        return
    assert converted == (model, source, since)
    assert source and len(source) <= MAX_IDENTIFIER_CHARS
    assert since is None or math.isfinite(since)


@needs_purge
@FAST
@given(
    model=st.text(),
    source=st.text(min_size=1, max_size=MAX_IDENTIFIER_CHARS),
    since=st.none() | st.floats(allow_nan=False, allow_infinity=False),
)
def test_purge_request_round_trips(model: str, source: str, since: float | None) -> None:
    message = wire(PURGE.from_types(model, source, since))
    assert PURGE.to_types(message) == (model, source, since)


@needs_purge
@FAST
@given(data=st.data())
def test_sample_sources_and_purge_outcomes_round_trip(data: st.DataObject) -> None:
    summaries = data.draw(
        st.lists(
            st.builds(
                adaptation_types.SourceSummary, st.text(), INT64, FLOATS, FLOATS, INT64, INT64
            ),
            max_size=3,
        )
    )
    listed = adaptation_converters.ListSampleSourcesResponseConverter
    assert norm(listed.to_types(wire(listed.from_types(summaries)))) == norm(summaries)
    outcome = data.draw(
        st.builds(
            adaptation_types.PurgeOutcome,
            st.text(),
            st.text(),
            INT64,
            INT64,
            INT64,
            st.lists(INT64, max_size=4),
        )
    )
    purged = adaptation_converters.PurgeSamplesResponseConverter
    assert purged.to_types(wire(purged.from_types(outcome))) == outcome


# ---- the adaptation converters: what the server sends decodes back ------------------------------

FLOATS = st.floats()  # NaN and ±inf included: they travel as doubles
OPTIONAL_FLOATS = st.none() | FLOATS
GATES = st.builds(
    GateResult,
    candidate_new=FLOATS,
    incumbent_new=FLOATS,
    candidate_anchor=FLOATS,
    incumbent_anchor=FLOATS,
    new_examples=INT64,
    anchor_examples=INT64,
    promote=st.booleans(),
    reason=st.text(),
    new_margin=FLOATS,
    anchor_margin=FLOATS,
    anchor_held_out=st.booleans(),
)
JOBS = st.builds(
    Job,
    id=st.text(),
    model=st.text(),
    state=st.sampled_from(JobState),
    trigger=st.text(),
    reason=st.text(),
    base_version=INT64,
    samples_upto=INT64,
    created=FLOATS,
    started=OPTIONAL_FLOATS,
    finished=OPTIONAL_FLOATS,
    candidate_version=st.none() | INT64,
    gate=st.none() | GATES,
    error=st.text(),
    attempt=st.integers(-(2**31), 2**31 - 1),
)
METRIC_VALUES = st.one_of(
    INT64, FLOATS, st.booleans(), st.text(max_size=5), st.none(), st.just({"epochs": 2})
)
VERSIONS = st.builds(
    VersionSummary,
    model=st.text(),
    version=INT64,
    parent=st.none() | INT64,
    created=st.text(),
    status=st.text(),
    reason=st.text(),
    samples_upto=INT64,
    metrics=st.dictionaries(st.text(max_size=10), METRIC_VALUES, max_size=5),
)
# NaN is "no value yet": it travels as an absent optional field.
DETECTORS = st.builds(
    DetectorStatus,
    model=st.just("m"),
    detector=st.text(),
    method=st.text(),
    version=INT64,
    state=st.sampled_from(DetectorState),
    statistic=FLOATS,
    threshold=FLOATS,
    drift_detected=st.booleans(),
    alarm=st.booleans(),
    alarm_since=OPTIONAL_FLOATS,
    samples_seen=INT64,
    reference_source=st.text(),
    reference_size=INT64,
    calibration_seconds=OPTIONAL_FLOATS,
    message=st.text(),
    effect=FLOATS,
    min_effect=FLOATS,
    budgeted=st.booleans(),
)
CANDIDATES = st.builds(
    Candidate,
    prediction_id=st.text(),
    text=st.text(),
    version=INT64,
    predicted_label=st.text(),
    confidence=FLOATS,
    atypicality=FLOATS,
    score=FLOATS,
)


def norm(value: Any) -> Any:
    """``value`` comparable with ``==`` although it holds NaNs."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__name__,
            *(norm(getattr(value, f.name)) for f in dataclasses.fields(value)),
        )
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [norm(v) for v in value]
    if isinstance(value, dict):
        return {k: norm(v) for k, v in value.items()}
    return value


@FAST
@given(gate=GATES)
def test_gate_result_round_trips_and_sends_forgetting(gate: GateResult) -> None:
    message = wire(GateResultConverter.from_types(gate))
    assert norm(GateResultConverter.to_types(message)) == norm(gate)
    assert norm(message.forgetting) == norm(gate.forgetting)


@FAST
@given(job=JOBS)
def test_job_round_trips(job: Job) -> None:
    assert norm(JobConverter.to_types(wire(JobConverter.from_types(job)))) == norm(job)


@FAST
@given(versions=st.lists(VERSIONS, max_size=3))
def test_versions_round_trip_with_their_numeric_metrics(versions: list[VersionSummary]) -> None:
    decoded = ListVersionsResponseConverter.to_types(
        wire(ListVersionsResponseConverter.from_types(versions))
    )
    expected = [dataclasses.replace(v, metrics=numeric_metrics(v.metrics)) for v in versions]
    assert norm(decoded) == norm(expected)
    single = (
        VersionConverter.to_types(wire(VersionConverter.from_types(versions[0])))
        if versions
        else None
    )
    assert norm(single) == norm(expected[0] if expected else None)


@FAST
@given(
    status=st.builds(
        ModelStatus,
        model=st.text(),
        serving_version=INT64,
        samples_since_version=INT64,
        labels=st.lists(st.text(max_size=10), max_size=4),
        job=st.none() | JOBS,
        last_gate=st.none() | GATES,
        needs_adaptation=st.booleans(),
        backoff_until=OPTIONAL_FLOATS,
    )
)
def test_model_status_round_trips(status: ModelStatus) -> None:
    decoded = ModelStatusConverter.to_types(wire(ModelStatusConverter.from_types(status)))
    assert norm(decoded) == norm(status)


@FAST
@given(
    event=st.builds(
        Event,
        kind=st.sampled_from(EventKind),
        model=st.text(),
        time=FLOATS,
        message=st.text(),
        attributes=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=4),
    )
)
def test_event_round_trips(event: Event) -> None:
    assert norm(EventConverter.to_types(wire(EventConverter.from_types(event)))) == norm(event)


@FAST
@given(
    status=st.builds(
        DriftStatus,
        model=st.just("m"),
        version=INT64,
        alarm=st.booleans(),
        detectors=st.lists(DETECTORS, max_size=3),
        samples_dropped=INT64,
        enabled=st.booleans(),
        estimated_accuracy=FLOATS,
        # 0 is not a period: the message's 0 (unset) reads back as NaN.
        false_alarm_every_hours=FLOATS.filter(lambda x: x != 0),
        traffic_rate=FLOATS,
    )
)
def test_drift_status_round_trips(status: DriftStatus) -> None:
    decoded = DriftStatusConverter.to_types(wire(DriftStatusConverter.from_types(status)))
    assert norm(decoded) == norm(status)


@FAST
@given(candidates=st.lists(CANDIDATES, max_size=4))
def test_labeling_candidates_round_trip(candidates: list[Candidate]) -> None:
    message = wire(GetLabelingCandidatesResponseConverter.from_types(candidates))
    assert norm(GetLabelingCandidatesResponseConverter.to_types(message)) == norm(candidates)


@FAST
@given(outcome=st.builds(AddOutcome, INT64, INT64, st.lists(st.text(max_size=10), max_size=5)))
def test_add_outcome_round_trips(outcome: AddOutcome) -> None:
    message = wire(AddSamplesResponseConverter.from_types(outcome))
    assert AddSamplesResponseConverter.to_types(message) == outcome


# ---- bugs these properties found, fixed: each refused with a short message --------------------


@pytest.mark.parametrize(
    ("datatype", "field", "value", "message"),
    [
        ("INT8", "int_contents", 300, "input 'x': 300 is outside the range of INT8 [-128, 127]"),
        (
            "INT16",
            "int_contents",
            -70_000,
            "input 'x': -70000 is outside the range of INT16 [-32768, 32767]",
        ),
        ("UINT8", "uint_contents", 256, "input 'x': 256 is outside the range of UINT8 [0, 255]"),
        (
            "UINT16",
            "uint_contents",
            65_536,
            "input 'x': 65536 is outside the range of UINT16 [0, 65535]",
        ),
    ],
)
def test_an_out_of_range_typed_value_is_invalid_input(
    datatype: str, field: str, value: int, message: str
) -> None:
    # Protobuf carries these datatypes in 32-bit fields: such a value used to wrap (300 as 44).
    request = pb.ModelInferRequest(model_name="tiny")
    contents = request.inputs.add(name="x", datatype=datatype, shape=[2]).contents
    getattr(contents, field).extend([1, value])

    with pytest.raises(InvalidInput) as info:
        ModelInferRequestConverter.to_types(request, DecodeLimits(64, 16_384))

    assert status_for(info.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert message in str(info.value)
    check_refusal(info.value)


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
@pytest.mark.parametrize("datatype", ["BOOL", "FP32"])
def test_an_empty_shape_with_a_dimension_above_the_limit_is_invalid_input(
    datatype: str, raw: bool
) -> None:
    # 0 elements pass every count limit, but numpy cannot lay out such a shape (it was INTERNAL).
    request = pb.ModelInferRequest(model_name="tiny")
    request.inputs.add(name="text", datatype=datatype, shape=[0, 2**32, 2**32])
    if raw:
        request.raw_input_contents.append(b"")

    with pytest.raises(InvalidInput) as info:
        ModelInferRequestConverter.to_types(request, DecodeLimits(64, 16_384))

    assert status_for(info.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'text' has a dimension above 2147483647 in shape [0, 4294967296, 4294967296]" in (
        str(info.value)
    )
    check_refusal(info.value)


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_an_empty_shape_too_big_to_lay_out_is_invalid_input(raw: bool) -> None:
    request = pb.ModelInferRequest(model_name="tiny")
    request.inputs.add(name="text", datatype="FP64", shape=[0, 2**30, 2**30])
    if raw:
        request.raw_input_contents.append(b"")

    with pytest.raises(InvalidInput) as info:
        ModelInferRequestConverter.to_types(request, DecodeLimits(64, 16_384))

    assert status_for(info.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert "non-zero dimensions multiply to more than 2147483647" in str(info.value)
    check_refusal(info.value)


@pytest.mark.parametrize("limits", [None, DecodeLimits(64, 16_384)], ids=["no-limits", "limits"])
def test_a_huge_declared_shape_is_refused_with_a_short_message(limits: DecodeLimits | None) -> None:
    request = pb.ModelInferRequest(model_name="tiny")
    request.inputs.add(
        name="\U000e0001" * MAX_IDENTIFIER_CHARS, datatype="BYTES", shape=[2**63 - 1] * 8
    )

    with pytest.raises(InvalidInput) as info:
        ModelInferRequestConverter.to_types(request, limits)

    assert status_for(info.value) == grpc.StatusCode.INVALID_ARGUMENT
    message = str(info.value)
    assert message.startswith("input '\\U000e0001") and "…' (128 characters) has " in message
    assert "shape [922...(19 digits), 922...(19 digits), " in message
    if limits is not None:  # the element count is checked first, and shortened too
        assert "(523...(152 digits) elements); this model takes at most 64" in message
    else:
        assert "has a dimension above 2147483647 in shape [" in message
    assert len(message) < MAX_MESSAGE, len(message)


def test_many_long_input_names_are_refused_with_a_short_message() -> None:
    inputs = [Tensor("n" * MAX_IDENTIFIER_CHARS, "BYTES", (0,), []) for _ in range(16)]

    with pytest.raises(InvalidInput) as info:
        CONTRACT.decode(inputs)

    assert status_for(info.value) == grpc.StatusCode.INVALID_ARGUMENT
    shown = f"'{'n' * 40}…' (128 characters)"
    assert str(info.value).startswith(f"got input tensor(s) {shown}, {shown}, {shown} and 13 more")
    assert len(str(info.value)) < MAX_MESSAGE, len(str(info.value))


def test_many_long_output_names_are_refused_with_a_short_message() -> None:
    with pytest.raises(InvalidInput) as info:
        OUTPUTS.requested_outputs(["o" * MAX_IDENTIFIER_CHARS] * 16)

    assert status_for(info.value) == grpc.StatusCode.INVALID_ARGUMENT
    shown = f"'{'o' * 40}…' (128 characters)"
    assert str(info.value).startswith(f"unknown output(s) {shown}, {shown}, {shown} and 13 more")
    assert len(str(info.value)) < MAX_MESSAGE, len(str(info.value))


def test_a_pending_version_round_trips_with_its_review_evidence() -> None:
    change = LabelChange("refund_request", "upgrade_plan", 200, ("a refund for my zqx watch",))
    review = ReviewEvidence(
        sources={"vendor": 200, "team": 3},
        known_samples=203,
        confident_disagreement=0.95,
        disagreement_by_source={"vendor": 0.96, "team": 0.0},
        trigger="zqx",
        trigger_share=1.0,
        cluster_share=0.6,
        cluster_reference_share=0.01,
        traffic=800,
        flip_rate=0.01,
        flip_trigger="zqx",
        contradictions=(change,),
        flips=(change,),
        other_holdout=3,
        other_candidate=1.0,
        other_incumbent=1.0,
        other_margin=0.5,
        reasons=("why", "and why"),
    )
    version = VersionSummary("support-intents", 4, 2, "", "pending", "", 360, {}, review)
    decoded = VersionConverter.to_types(wire(VersionConverter.from_types(version)))
    assert decoded == version
    assert VersionConverter.to_types(wire(VersionConverter.from_types(
        dataclasses.replace(version, review=None)))).review is None  # fmt: skip
