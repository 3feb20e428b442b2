"""Open Inference Protocol messages ⇄ loopserve types (service.api.converters)."""

from __future__ import annotations

import json
import struct
from typing import Any, TypeVar

import numpy as np
import pytest
from google.protobuf.message import Message

from service.api import converters
from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api.converters import (
    MAX_TENSORS,
    BytesCodec,
    DecodeLimits,
    InferParameterConverter,
    ModelInferRequestConverter,
    ModelInferResponseConverter,
    ModelMetadataResponseConverter,
)
from service.errors import InvalidInput
from service.types import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Tensor,
    TensorSpec,
)

M = TypeVar("M", bound=Message)


def _length_prefixed(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def _request(
    name: str = "text", datatype: str = "BYTES", shape: list[int] | None = None
) -> tuple[pb.ModelInferRequest, pb.ModelInferRequest.InferInputTensor]:
    request = pb.ModelInferRequest(model_name="tiny", model_version="1", id="req-1")
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape or [])
    return request, tensor


def _wire(message: M) -> M:
    """Serialize and parse again, as the message would travel over gRPC."""
    copy = type(message)()
    copy.ParseFromString(message.SerializeToString())
    return copy


# --- ModelInferRequestConverter.to_types: accepted encodings ------------------------------------


def test_typed_bytes_contents_are_decoded() -> None:
    request, tensor = _request(shape=[2])
    tensor.contents.bytes_contents.extend([b"hello", "grüße".encode()])
    request.outputs.add(name="label")
    request.parameters["priority"].int64_param = 3

    decoded = ModelInferRequestConverter.to_types(_wire(request))

    assert decoded.model == "tiny"
    assert decoded.version == "1"
    assert decoded.id == "req-1"
    assert decoded.outputs == ["label"]
    assert decoded.parameters == {"priority": 3}
    (text,) = decoded.inputs
    assert (text.name, text.datatype, text.shape) == ("text", "BYTES", (2,))
    assert text.data == [b"hello", "grüße".encode()]


@pytest.mark.parametrize(
    ("datatype", "field", "values", "dtype"),
    [
        ("FP32", "fp32_contents", [0.5, -1.25, 3.0, 4.0], np.float32),
        ("FP64", "fp64_contents", [0.5, -1.25, 3.0, 4.0], np.float64),
        ("INT32", "int_contents", [1, -2, 3, -4], np.int32),
        ("INT64", "int64_contents", [1, -2, 2**40, -4], np.int64),
        ("UINT8", "uint_contents", [0, 1, 254, 255], np.uint8),
        ("UINT64", "uint64_contents", [0, 1, 2**63, 5], np.uint64),
        ("BOOL", "bool_contents", [True, False, True, True], np.bool_),
    ],
)
def test_typed_numeric_contents_are_decoded(
    datatype: str, field: str, values: list[object], dtype: type
) -> None:
    request, tensor = _request(name="x", datatype=datatype, shape=[2, 2])
    getattr(tensor.contents, field).extend(values)

    (decoded,) = ModelInferRequestConverter.to_types(_wire(request)).inputs

    assert decoded.datatype == datatype
    assert decoded.shape == (2, 2)
    assert isinstance(decoded.data, np.ndarray)
    assert decoded.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(decoded.data.reshape(-1), np.array(values, dtype=dtype))


def test_raw_bytes_contents_use_length_prefixed_encoding() -> None:
    items = [b"first", b"", "naïve café ☕".encode(), b"\x00\xff binary"]
    request, _ = _request(shape=[len(items)])
    request.raw_input_contents.append(_length_prefixed(*items))

    (decoded,) = ModelInferRequestConverter.to_types(_wire(request)).inputs

    assert decoded.data == items
    assert decoded.shape == (4,)


def test_raw_bytes_with_shape_n_by_1() -> None:
    request, _ = _request(shape=[2, 1])
    request.raw_input_contents.append(_length_prefixed(b"a", b"b"))

    (decoded,) = ModelInferRequestConverter.to_types(request).inputs

    assert decoded.data == [b"a", b"b"]
    assert decoded.shape == (2, 1)


def test_raw_fp32_contents_are_little_endian_and_shaped() -> None:
    values = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    request, _ = _request(name="x", datatype="FP32", shape=[2, 3])
    request.raw_input_contents.append(values.astype("<f4").tobytes())

    (decoded,) = ModelInferRequestConverter.to_types(_wire(request)).inputs

    assert isinstance(decoded.data, np.ndarray)
    assert decoded.data.dtype == np.float32
    assert decoded.data.shape == (2, 3)
    np.testing.assert_array_equal(decoded.data, values)


def test_raw_fp16_is_accepted() -> None:
    values = np.array([0.5, 1.5, -2.0], dtype=np.float16)
    request, _ = _request(name="x", datatype="FP16", shape=[3])
    request.raw_input_contents.append(values.astype("<f2").tobytes())

    (decoded,) = ModelInferRequestConverter.to_types(request).inputs

    np.testing.assert_array_equal(decoded.data, values)


def test_empty_bytes_tensor_with_shape_zero() -> None:
    request, _ = _request(shape=[0])
    request.raw_input_contents.append(b"")

    (decoded,) = ModelInferRequestConverter.to_types(request).inputs

    assert decoded.data == []
    assert decoded.shape == (0,)


def test_several_raw_inputs_are_matched_in_order() -> None:
    request = pb.ModelInferRequest(model_name="tiny")
    request.inputs.add(name="a", datatype="BYTES", shape=[1])
    request.inputs.add(name="b", datatype="INT64", shape=[2])
    request.raw_input_contents.append(_length_prefixed(b"only"))
    request.raw_input_contents.append(np.array([7, 8], dtype="<i8").tobytes())

    a, b = ModelInferRequestConverter.to_types(request).inputs

    assert (a.name, a.data) == ("a", [b"only"])
    assert b.name == "b"
    np.testing.assert_array_equal(b.data, [7, 8])


def test_typed_and_raw_encodings_decode_to_the_same_array() -> None:
    values = np.arange(4, dtype=np.float32)
    typed, tensor = _request(name="x", datatype="FP32", shape=[2, 2])
    tensor.contents.fp32_contents.extend(values.tolist())
    raw, _ = _request(name="x", datatype="FP32", shape=[2, 2])
    raw.raw_input_contents.append(values.tobytes())

    (from_typed,) = ModelInferRequestConverter.to_types(typed).inputs
    (from_raw,) = ModelInferRequestConverter.to_types(raw).inputs

    assert from_raw.data.shape == (2, 2)
    assert from_typed.data.shape == from_raw.data.shape


def test_request_from_types_to_types_round_trip() -> None:
    original = InferenceRequest(
        model="tiny",
        version="2",
        id="abc",
        inputs=[
            Tensor("text", "BYTES", (3,), [b"one", b"", "два".encode()]),
            Tensor.from_array("x", np.array([[1.5, -2.0]], dtype=np.float32)),
        ],
        outputs=["label", "probabilities"],
        parameters={"flag": True, "n": 5, "ratio": 0.5, "note": "hi"},
    )

    decoded = ModelInferRequestConverter.to_types(
        _wire(ModelInferRequestConverter.from_types(original))
    )

    assert (decoded.model, decoded.version, decoded.id) == ("tiny", "2", "abc")
    assert decoded.outputs == ["label", "probabilities"]
    assert decoded.parameters == original.parameters
    text, x = decoded.inputs
    assert text == original.inputs[0]
    assert (x.name, x.datatype, x.shape) == ("x", "FP32", (1, 2))
    np.testing.assert_array_equal(x.data, original.inputs[1].data)


# --- ModelInferRequestConverter.to_types: rejections --------------------------------------------


def test_shape_and_typed_element_count_mismatch() -> None:
    request, tensor = _request(shape=[3])
    tensor.contents.bytes_contents.extend([b"a", b"b"])

    with pytest.raises(InvalidInput, match=r"shape \[3\] \(3 elements\) but 2 elements of data"):
        ModelInferRequestConverter.to_types(request)


def test_shape_and_raw_bytes_element_count_mismatch() -> None:
    request, _ = _request(shape=[1])
    request.raw_input_contents.append(_length_prefixed(b"a", b"b"))

    # Decoding stops after the declared count, so the message cannot say how many there are.
    with pytest.raises(
        InvalidInput, match=r"'text' has shape \[1\] \(1 elements\) but more elements of data"
    ):
        ModelInferRequestConverter.to_types(request)


def test_raw_bytes_with_fewer_elements_than_declared() -> None:
    request, _ = _request(shape=[3])
    request.raw_input_contents.append(_length_prefixed(b"a", b"b"))

    with pytest.raises(InvalidInput, match=r"shape \[3\] \(3 elements\) but 2 elements of data"):
        ModelInferRequestConverter.to_types(request)


def test_shape_and_raw_fp32_element_count_mismatch() -> None:
    request, _ = _request(name="x", datatype="FP32", shape=[2, 2])
    request.raw_input_contents.append(np.zeros(3, dtype="<f4").tobytes())

    with pytest.raises(InvalidInput, match=r"shape \[2, 2\] \(4 elements\) but 3 elements"):
        ModelInferRequestConverter.to_types(request)


def test_raw_fp32_not_a_whole_number_of_elements() -> None:
    request, _ = _request(name="x", datatype="FP32", shape=[3])
    request.raw_input_contents.append(b"\x00" * 10)

    with pytest.raises(InvalidInput, match="not a whole number of FP32 elements"):
        ModelInferRequestConverter.to_types(request)


def test_typed_contents_in_the_wrong_field_are_rejected() -> None:
    request, tensor = _request(name="x", datatype="FP32", shape=[2])
    tensor.contents.int_contents.extend([1, 2])

    with pytest.raises(InvalidInput, match="'x' is declared FP32 but its data is in int_contents"):
        ModelInferRequestConverter.to_types(request)


@pytest.mark.parametrize("raw_count", [1, 3])
def test_raw_count_differs_from_input_count(raw_count: int) -> None:
    request = pb.ModelInferRequest(model_name="tiny")
    request.inputs.add(name="a", datatype="BYTES", shape=[1])
    request.inputs.add(name="b", datatype="BYTES", shape=[1])
    request.raw_input_contents.extend([_length_prefixed(b"x")] * raw_count)

    with pytest.raises(InvalidInput, match=rf"{raw_count} raw_input_contents for 2 inputs"):
        ModelInferRequestConverter.to_types(request)


def test_both_typed_and_raw_contents_for_one_input() -> None:
    request, tensor = _request(shape=[1])
    tensor.contents.bytes_contents.append(b"typed")
    request.raw_input_contents.append(_length_prefixed(b"raw"))

    with pytest.raises(InvalidInput, match="both contents and raw_input_contents; send one"):
        ModelInferRequestConverter.to_types(request)


def test_truncated_bytes_buffer_inside_length_prefix() -> None:
    request, _ = _request(shape=[2])
    request.raw_input_contents.append(_length_prefixed(b"abc") + b"\x05\x00")

    with pytest.raises(InvalidInput, match="'text' end inside a length prefix"):
        ModelInferRequestConverter.to_types(request)


def test_truncated_bytes_buffer_element_overruns() -> None:
    request, _ = _request(shape=[2])
    request.raw_input_contents.append(_length_prefixed(b"abc") + struct.pack("<I", 10) + b"short")

    with pytest.raises(InvalidInput, match="element 1 overruns the buffer"):
        ModelInferRequestConverter.to_types(request)


@pytest.mark.parametrize("datatype", ["FLOAT", "STRING", "fp32", ""])
def test_unknown_datatype(datatype: str) -> None:
    request, _ = _request(name="x", datatype=datatype, shape=[1])
    request.raw_input_contents.append(b"\x00" * 4)

    with pytest.raises(InvalidInput, match=f"'x' has unknown datatype '{datatype}'"):
        ModelInferRequestConverter.to_types(request)


def test_fp16_cannot_be_sent_typed() -> None:
    request, _ = _request(name="x", datatype="FP16", shape=[1])

    with pytest.raises(InvalidInput, match="FP16 can only be sent as raw contents"):
        ModelInferRequestConverter.to_types(request)


@pytest.mark.parametrize("shape", [[-1], [2, -1], [-3, 1]])
def test_negative_dimension(shape: list[int]) -> None:
    request, tensor = _request(shape=shape)
    tensor.contents.bytes_contents.append(b"a")

    with pytest.raises(InvalidInput, match="'text' has a negative dimension in shape"):
        ModelInferRequestConverter.to_types(request)


# --- ModelInferResponseConverter ----------------------------------------------------------------


def test_response_round_trip_label_and_probabilities() -> None:
    labels = ["greeting", "complaint", "question"]
    probabilities = np.array([[0.7, 0.2, 0.1], [0.05, 0.15, 0.8]], dtype=np.float32)
    response = InferenceResponse(
        model="tiny",
        version="2",
        id="req-9",
        outputs=[
            Tensor("label", "BYTES", (2,), [b"greeting", b"question"]),
            Tensor.from_array("probabilities", probabilities, {"labels": json.dumps(labels)}),
        ],
    )

    message = _wire(ModelInferResponseConverter.from_types(response))

    # Outputs always travel as raw contents, one per output, nothing typed.
    assert len(message.raw_output_contents) == 2
    assert all(not o.HasField("contents") for o in message.outputs)
    assert message.raw_output_contents[0] == _length_prefixed(b"greeting", b"question")

    decoded = ModelInferResponseConverter.to_types(message)

    assert (decoded.model, decoded.version, decoded.id) == ("tiny", "2", "req-9")
    label, probs = decoded.outputs
    assert label == response.outputs[0]
    assert (probs.name, probs.datatype, probs.shape) == ("probabilities", "FP32", (2, 3))
    assert probs.data.dtype == np.float32
    np.testing.assert_array_equal(probs.data, probabilities)
    assert json.loads(probs.parameters["labels"]) == labels


def test_response_round_trip_non_ascii_and_empty_labels() -> None:
    items = ["réservation".encode(), b"", "予約".encode()]
    response = InferenceResponse("m", "1", "", [Tensor("label", "BYTES", (3,), items)])

    decoded = ModelInferResponseConverter.to_types(
        _wire(ModelInferResponseConverter.from_types(response))
    )

    assert decoded.outputs[0].data == items


def test_response_to_types_reads_typed_contents_too() -> None:
    message = pb.ModelInferResponse(model_name="m", model_version="1")
    output = message.outputs.add(name="label", datatype="BYTES", shape=[1])
    output.contents.bytes_contents.append(b"greeting")

    decoded = ModelInferResponseConverter.to_types(message)

    assert decoded.outputs[0].data == [b"greeting"]


# --- ModelMetadataResponseConverter -------------------------------------------------------------


def test_metadata_round_trip_with_properties() -> None:
    labels = ["greeting", "complaint", "question"]
    metadata = ModelMetadata(
        name="tiny",
        versions=["1", "2"],
        platform="onnxruntime_onnx",
        inputs=[TensorSpec("text", "BYTES", (-1,))],
        outputs=[
            TensorSpec("label", "BYTES", (-1,)),
            TensorSpec("probabilities", "FP32", (-1, 3)),
            TensorSpec("embedding", "FP32", (-1, 32)),
        ],
        properties={"labels": json.dumps(labels), "current_version": "2", "note": "ünïcode"},
    )

    decoded = ModelMetadataResponseConverter.to_types(
        _wire(ModelMetadataResponseConverter.from_types(metadata))
    )

    assert decoded == metadata
    assert json.loads(decoded.properties["labels"]) == labels


# --- InferParameterConverter --------------------------------------------------------------------


def test_parameters_from_types_pick_the_right_kind() -> None:
    message = pb.ModelInferRequest()
    InferParameterConverter.from_types(
        {"b": True, "f": False, "i": -7, "d": 0.25, "s": "héllo", "other": None},
        message.parameters,
    )

    kinds = {key: value.WhichOneof("parameter_choice") for key, value in message.parameters.items()}
    assert kinds == {
        "b": "bool_param",
        "f": "bool_param",
        "i": "int64_param",
        "d": "double_param",
        "s": "string_param",
        "other": "string_param",
    }
    assert message.parameters["other"].string_param == "None"


def test_parameters_round_trip_all_kinds() -> None:
    values = {"b": True, "f": False, "i": -(2**40), "zero": 0, "d": 1e-3, "s": "ü", "empty": ""}
    message = pb.ModelInferRequest()
    InferParameterConverter.from_types(values, message.parameters)

    decoded = InferParameterConverter.to_types(_wire(message).parameters)

    assert decoded == values
    assert type(decoded["b"]) is bool
    assert type(decoded["i"]) is int
    assert type(decoded["d"]) is float


def test_parameters_to_types_uint64_and_unset() -> None:
    params = {
        "u": pb.InferParameter(uint64_param=2**63 + 1),
        "unset": pb.InferParameter(),
    }

    assert InferParameterConverter.to_types(params) == {"u": 2**63 + 1, "unset": ""}


# --- BytesCodec ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "items",
    [
        [],
        [b""],
        [b"", b"", b""],
        [b"plain ascii"],
        ["ça coûte 5 €".encode(), "日本語".encode(), "🙂".encode()],
        [b"\x00\x01\x02", b"", b"x" * 70_000],
    ],
)
def test_bytes_codec_round_trip(items: list[bytes]) -> None:
    encoded = BytesCodec.encode(items)

    assert len(encoded) == sum(4 + len(item) for item in items)
    assert BytesCodec.decode(encoded, "t") == items


def test_bytes_codec_prefix_is_little_endian_uint32() -> None:
    assert BytesCodec.encode([b"ab", b""]) == b"\x02\x00\x00\x00ab\x00\x00\x00\x00"


def test_bytes_codec_decode_names_the_input_in_errors() -> None:
    with pytest.raises(InvalidInput, match="'my_input' end inside a length prefix"):
        BytesCodec.decode(b"\x01\x00", "my_input")
    with pytest.raises(InvalidInput, match="'my_input': element 0 overruns the buffer"):
        BytesCodec.decode(struct.pack("<I", 2) + b"a", "my_input")


# --- bounded decoding: limits are checked before any per-element work ---------------------------

LIMITS = DecodeLimits(max_elements=64, max_element_bytes=16_384)
# 60 MB of zero-length elements: 15.7 million length prefixes and nothing else.
EMPTY_ELEMENTS = b"\x00\x00\x00\x00" * 15_728_640


def _refused(request: pb.ModelInferRequest, limits: DecodeLimits | None = LIMITS) -> str:
    with pytest.raises(InvalidInput) as info:
        ModelInferRequestConverter.to_types(_wire(request), limits)
    return str(info.value)


def _refused_undecoded(request: pb.ModelInferRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The refusal of ``request``, failing the test if any tensor contents were decoded first."""

    def never(*args: object) -> None:
        raise AssertionError("tensor contents were decoded before the limits refused them")

    monkeypatch.setattr(converters, "_decode_raw", never)
    monkeypatch.setattr(converters, "_decode_typed", never)
    monkeypatch.setattr(converters.BytesCodec, "decode", staticmethod(never))
    monkeypatch.setattr(converters.BytesCodec, "split", staticmethod(never))
    return _refused(request)


def test_a_declared_shape_over_the_limit_is_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request, _ = _request(shape=[len(EMPTY_ELEMENTS) // 4])
    request.raw_input_contents.append(EMPTY_ELEMENTS)

    message = _refused_undecoded(request, monkeypatch)

    assert message == (
        "input 'text' has shape [15728640] (15728640 elements); this model takes at most 64 "
        "per request"
    )


def test_raw_bytes_over_the_size_limit_are_refused_before_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request, _ = _request(shape=[1])
    request.raw_input_contents.append(EMPTY_ELEMENTS)

    message = _refused_undecoded(request, monkeypatch)

    assert message == (
        f"raw contents of input 'text' are {len(EMPTY_ELEMENTS)} bytes; at most 1048832 "
        "(64 elements of at most 16384 bytes, each with a 4-byte length prefix)"
    )


def test_raw_bytes_within_the_size_limit_decode_no_more_than_declared() -> None:
    request, _ = _request(shape=[2])
    request.raw_input_contents.append(EMPTY_ELEMENTS[: LIMITS.max_raw_bytes])

    assert _refused(request) == "input 'text' has shape [2] (2 elements) but more elements of data"


def test_typed_contents_over_the_limit_are_refused_before_they_are_copied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request, tensor = _request(shape=[200_000])
    tensor.contents.bytes_contents.extend([b""] * 200_000)

    message = _refused_undecoded(request, monkeypatch)

    assert "(200000 elements); this model takes at most 64 per request" in message


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda r: [r.inputs.add(name=f"i{i}") for i in range(MAX_TENSORS)],
            "17 input tensors; at most 16",
        ),
        (
            lambda r: [r.outputs.add(name=f"o{i}") for i in range(17)],
            "17 requested outputs; at most 16",
        ),
        (
            lambda r: [r.parameters[f"p{i}"].SetInParent() for i in range(65)],
            "65 request parameters; at most 64",
        ),
        (
            lambda r: r.inputs[0].shape.extend([1] * 8),
            "9 dimensions in the shape of input 'text'; at most 8",
        ),
        (
            lambda r: [r.inputs[0].parameters[f"p{i}"].SetInParent() for i in range(65)],
            "65 parameters of input 'text'; at most 64",
        ),
    ],
)
def test_counts_that_bound_decoding_are_limited(mutate: Any, message: str) -> None:
    request, tensor = _request(shape=[1])
    tensor.contents.bytes_contents.append(b"hello")
    mutate(request)

    assert _refused(request) == message


@pytest.mark.parametrize(
    ("mutate", "what"),
    [
        (lambda r: setattr(r, "id", "i" * 100_000), "request id 'iii"),
        (lambda r: setattr(r.inputs[0], "name", "n" * 100_000), "input name 'nnn"),
        (lambda r: r.outputs.add(name="o" * 100_000), "output name 'ooo"),
    ],
)
def test_long_names_and_ids_are_refused_with_a_short_message(mutate: Any, what: str) -> None:
    request, tensor = _request(shape=[1])
    tensor.contents.bytes_contents.append(b"hello")
    mutate(request)

    message = _refused(request)

    assert message.startswith(what) and "…' (100000 characters) is too long; at most 128" in message
    assert len(message) < 200


def test_caller_strings_are_quoted_truncated_in_messages() -> None:
    request, tensor = _request(name="x", datatype="D" * 1000, shape=[1])
    tensor.contents.bytes_contents.append(b"hello")

    message = _refused(request, limits=None)

    assert message == "input 'x' has unknown datatype 'DDDDDDDDDDDDDDDDDDDD…' (1000 characters)"


def test_without_limits_the_converter_still_decodes_large_tensors() -> None:
    request, _ = _request(shape=[1000])
    request.raw_input_contents.append(_length_prefixed(*[b"x"] * 1000))

    (decoded,) = ModelInferRequestConverter.to_types(request).inputs

    assert len(decoded.data) == 1000


def test_bytes_codec_decode_can_stop_after_a_count() -> None:
    with pytest.raises(InvalidInput, match="'t' hold more than 2 elements"):
        BytesCodec.decode(EMPTY_ELEMENTS, "t", max_items=2)
    assert BytesCodec.split(EMPTY_ELEMENTS, "t", max_items=2) == ([b"", b""], False)
    assert BytesCodec.split(_length_prefixed(b"a"), "t", max_items=1) == ([b"a"], True)
