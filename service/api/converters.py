"""Open Inference Protocol messages ⇄ loopserve types. One converter per message.

``to_types`` decodes a protobuf message into service types (validating what the wire allows to
be malformed); ``from_types`` encodes service types into a protobuf message. Outputs are always
sent in ``raw_output_contents`` (as Triton does); inputs are accepted typed or raw.

Decoding a request runs on the server's event loop, so with :class:`DecodeLimits` every check
that bounds the work (counts of tensors, dimensions and parameters, the declared element count,
the size of raw contents) comes before any per-element work: a hostile request is refused in
time independent of its size instead of stalling every other call.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Mapping, MutableMapping, Sized
from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np

from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.errors import InvalidInput, check_length, quote
from service.types import (
    DATATYPE_TO_NUMPY,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ServerMetadata,
    Tensor,
    TensorData,
    TensorSpec,
)

_CONTENTS_FIELD = {
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
_LENGTH = struct.Struct("<I")
# Byte orders that are already the wire's little-endian ("|": single bytes; "=": native).
_LITTLE_ENDIAN = ("<", "|", "=") if sys.byteorder == "little" else ("<", "|")
MAX_TENSORS = 16  # input or requested output tensors per request
MAX_DIMS = 8
MAX_DIM = (
    2**31 - 1
)  # one dimension; ONNX Runtime and numpy index with 64-bit, but no input needs more
MAX_PARAMETERS = 64  # per request and per tensor


@dataclass(frozen=True)
class DecodeLimits:
    """What one request may hold for the model it names; see the module docstring."""

    max_elements: int  # per BYTES input tensor (the model's items per request)
    max_element_bytes: int  # per BYTES element
    max_tensor_elements: int = 0  # per input tensor of numbers; 0: max_elements

    def elements_limit(self, datatype: str) -> int:
        if datatype == "BYTES" or self.max_tensor_elements == 0:
            return self.max_elements
        return self.max_tensor_elements

    @property
    def max_raw_bytes(self) -> int:
        """The largest raw BYTES contents that can hold an acceptable tensor."""
        return self.max_elements * (_LENGTH.size + self.max_element_bytes)


def _check_count(what: str, items: Sized, limit: int) -> None:
    if len(items) > limit:
        raise InvalidInput(f"{len(items)} {what}; at most {limit}")


class InferParameterConverter:
    @staticmethod
    def to_types(params: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
        return {
            key: getattr(value, value.WhichOneof("parameter_choice") or "string_param")
            for key, value in params.items()
        }

    @staticmethod
    def from_types(
        values: Mapping[str, Any], target: MutableMapping[str, pb.InferParameter]
    ) -> None:
        for key, value in values.items():
            if isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, bool):
                target[key].bool_param = value
            elif isinstance(value, int):
                target[key].int64_param = value
            elif isinstance(value, float):
                target[key].double_param = value
            else:
                target[key].string_param = str(value)


class BytesCodec:
    """The V2 raw encoding of BYTES tensors: each element is a 4-byte little-endian length + data."""

    @staticmethod
    def decode(raw: bytes, name: str, max_items: int | None = None) -> list[bytes]:
        """The elements of ``raw``. With ``max_items``, InvalidInput once the buffer holds more
        than that many; see :meth:`split`."""
        items, complete = BytesCodec.split(raw, name, max_items)
        if not complete:
            raise InvalidInput(
                f"raw contents of input {quote(name)} hold more than {max_items} elements"
            )
        return items

    @staticmethod
    def split(raw: bytes, name: str, max_items: int | None = None) -> tuple[list[bytes], bool]:
        """(elements, whether that is all of them). Stops after ``max_items``, so the work is
        bounded by the count the caller expects, not by what the buffer holds (60 MB of empty
        elements is 15 million of them)."""
        items: list[bytes] = []
        offset, view = 0, memoryview(raw)
        while offset < len(raw):
            if max_items is not None and len(items) >= max_items:
                return items, False
            if offset + 4 > len(raw):
                raise InvalidInput(
                    f"raw contents of input {quote(name)} end inside a length prefix"
                )
            (length,) = _LENGTH.unpack_from(raw, offset)
            offset += 4
            if offset + length > len(raw):
                raise InvalidInput(
                    f"raw contents of input {quote(name)}: element {len(items)} overruns the buffer"
                )
            items.append(bytes(view[offset : offset + length]))
            offset += length
        return items, True

    @staticmethod
    def encode(items: list[bytes]) -> bytes:
        return b"".join(_LENGTH.pack(len(item)) + item for item in items)


class InferInputTensorConverter:
    @staticmethod
    def to_types(
        tensor: pb.ModelInferRequest.InferInputTensor,
        raw: bytes | None,
        limits: DecodeLimits | None = None,
    ) -> Tensor:
        _check_declared(tensor, limits)
        return _decode_tensor(tensor, raw, limits)


def _decode_tensor(
    tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None, limits: DecodeLimits | None
) -> Tensor:
    """The tensor whose declaration passed :func:`_check_declared`, decoded."""
    name = quote(tensor.name)
    _check_count(f"parameters of input {name}", tensor.parameters, MAX_PARAMETERS)
    shape = tuple(int(d) for d in tensor.shape)
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input {name} has a negative dimension in shape {shape_text(shape)}")
    # Zero elements pass every count limit, but numpy cannot shape an array whose other
    # dimensions are that large.
    if any(d > MAX_DIM for d in shape):
        raise InvalidInput(
            f"input {name} has a dimension above {MAX_DIM} in shape {shape_text(shape)}"
        )
    if prod(d for d in shape if d) > MAX_DIM:
        raise InvalidInput(
            f"input {name} has shape {shape_text(shape)}: its non-zero dimensions multiply "
            f"to more than {MAX_DIM}"
        )
    datatype = tensor.datatype
    if datatype != "BYTES" and datatype not in DATATYPE_TO_NUMPY:
        raise InvalidInput(f"input {name} has unknown datatype {quote(datatype, 20)}")
    if limits is not None:
        _check_raw_size(name, datatype, raw, limits)
    has_typed = tensor.HasField("contents") and _typed_count(tensor, datatype) > 0
    if raw is not None and has_typed:
        raise InvalidInput(f"input {name} has both contents and raw_input_contents; send one")
    data = (
        _decode_raw(tensor.name, datatype, shape, raw)
        if raw is not None
        else _decode_typed(tensor, datatype, shape)
    )
    count = len(data) if isinstance(data, list) else data.size
    if count != prod(shape):
        raise InvalidInput(
            f"input {name} has shape {shape_text(shape)} ({_count_text(prod(shape))} elements) but "
            f"{count} elements of data"
        )
    return Tensor(
        tensor.name, datatype, shape, data, InferParameterConverter.to_types(tensor.parameters)
    )


class ModelInferRequestConverter:
    @staticmethod
    def to_types(
        request: pb.ModelInferRequest, limits: DecodeLimits | None = None
    ) -> InferenceRequest:
        """With ``limits`` (the server), a request is bounded before it is decoded; without
        (tests, tools), only malformed encodings are refused."""
        if limits is not None:
            _check_request_counts(request)
        for tensor in request.inputs:  # before raw contents are touched: each is a copy
            _check_declared(tensor, limits)
        raw = request.raw_input_contents
        if raw and len(raw) != len(request.inputs):
            raise InvalidInput(
                f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; send one per input, in order"
            )
        inputs = [
            _decode_tensor(tensor, raw[i] if raw else None, limits)
            for i, tensor in enumerate(request.inputs)
        ]
        return InferenceRequest(
            model=request.model_name,
            version=request.model_version,
            id=request.id,
            inputs=inputs,
            outputs=[o.name for o in request.outputs],
            parameters=InferParameterConverter.to_types(request.parameters),
        )

    @staticmethod
    def from_types(request: InferenceRequest) -> pb.ModelInferRequest:
        message = pb.ModelInferRequest(
            model_name=request.model, model_version=request.version, id=request.id
        )
        for tensor in request.inputs:
            message.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))
            message.raw_input_contents.append(_encode_raw(tensor.data))
        for name in request.outputs:
            message.outputs.add(name=name)
        InferParameterConverter.from_types(request.parameters, message.parameters)
        return message


class ModelInferResponseConverter:
    @staticmethod
    def from_types(response: InferenceResponse) -> pb.ModelInferResponse:
        message = pb.ModelInferResponse(
            model_name=response.model, model_version=response.version, id=response.id
        )
        for tensor in response.outputs:
            output = message.outputs.add(
                name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape)
            )
            InferParameterConverter.from_types(tensor.parameters, output.parameters)
            message.raw_output_contents.append(_encode_raw(tensor.data))
        return message

    @staticmethod
    def to_types(message: pb.ModelInferResponse) -> InferenceResponse:
        raw = list(message.raw_output_contents)
        outputs = []
        for i, tensor in enumerate(message.outputs):
            shape = tuple(int(d) for d in tensor.shape)
            if raw:
                data = _decode_raw(tensor.name, tensor.datatype, shape, raw[i])
            else:
                data = _decode_typed(tensor, tensor.datatype, shape)
            outputs.append(
                Tensor(
                    tensor.name,
                    tensor.datatype,
                    shape,
                    data,
                    InferParameterConverter.to_types(tensor.parameters),
                )
            )
        return InferenceResponse(message.model_name, message.model_version, message.id, outputs)


class ModelMetadataResponseConverter:
    @staticmethod
    def from_types(metadata: ModelMetadata) -> pb.ModelMetadataResponse:
        return pb.ModelMetadataResponse(
            name=metadata.name,
            versions=metadata.versions,
            platform=metadata.platform,
            inputs=[_tensor_metadata(s) for s in metadata.inputs],
            outputs=[_tensor_metadata(s) for s in metadata.outputs],
            properties=metadata.properties,
        )

    @staticmethod
    def to_types(message: pb.ModelMetadataResponse) -> ModelMetadata:
        def spec(t: pb.ModelMetadataResponse.TensorMetadata) -> TensorSpec:
            return TensorSpec(t.name, t.datatype, tuple(t.shape))

        return ModelMetadata(
            name=message.name,
            versions=list(message.versions),
            platform=message.platform,
            inputs=[spec(t) for t in message.inputs],
            outputs=[spec(t) for t in message.outputs],
            properties=dict(message.properties),
        )


class ServerMetadataResponseConverter:
    @staticmethod
    def from_types(metadata: ServerMetadata) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name=metadata.name, version=metadata.version, extensions=metadata.extensions
        )


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.datatype, shape=list(spec.shape)
    )


def _check_request_counts(request: pb.ModelInferRequest) -> None:
    """The request's own bounds: few tensors, parameters, short names and id."""
    _check_count("input tensors", request.inputs, MAX_TENSORS)
    _check_count("requested outputs", request.outputs, MAX_TENSORS)
    _check_count("raw_input_contents", request.raw_input_contents, MAX_TENSORS)
    _check_count("request parameters", request.parameters, MAX_PARAMETERS)
    check_length("request id", request.id)
    for output in request.outputs:
        check_length("output name", output.name)


def _check_declared(
    tensor: pb.ModelInferRequest.InferInputTensor, limits: DecodeLimits | None
) -> None:
    """Refuse a tensor whose name or declared shape is too large (for the model, with
    ``limits``), from the declaration alone."""
    check_length("input name", tensor.name)
    name = quote(tensor.name)
    _check_count(f"dimensions in the shape of input {name}", tensor.shape, MAX_DIMS)
    if limits is not None:
        _check_elements(name, tensor.datatype, tuple(tensor.shape), limits)


def _check_elements(name: str, datatype: str, shape: tuple[int, ...], limits: DecodeLimits) -> None:
    """Refuse a shape with more elements than the model takes (a negative dimension is refused
    with its own message later)."""
    elements = prod(shape)
    limit = limits.elements_limit(datatype)
    if elements > limit and all(d >= 0 for d in shape):
        raise InvalidInput(
            f"input {name} has shape {shape_text(shape)} ({_count_text(elements)} elements); this "
            f"model takes at most {limit} per request"
        )


def _check_raw_size(name: str, datatype: str, raw: bytes | None, limits: DecodeLimits) -> None:
    """Refuse raw contents larger than any acceptable tensor, before one element is decoded."""
    if raw is not None and datatype == "BYTES" and len(raw) > limits.max_raw_bytes:
        raise InvalidInput(
            f"raw contents of input {name} are {len(raw)} bytes; at most {limits.max_raw_bytes} "
            f"({limits.max_elements} elements of at most {limits.max_element_bytes} bytes, each "
            "with a 4-byte length prefix)"
        )


def _typed_count(tensor: Any, datatype: str) -> int:
    field = _CONTENTS_FIELD.get(datatype)
    return len(getattr(tensor.contents, field)) if field else 0


def _decode_typed(tensor: Any, datatype: str, shape: tuple[int, ...]) -> TensorData:
    field = _CONTENTS_FIELD.get(datatype)
    name = quote(tensor.name)
    if field is None:
        raise InvalidInput(f"tensor {name}: datatype {datatype} can only be sent as raw contents")
    values = getattr(tensor.contents, field)
    if not values:
        filled = [f.name for f, _ in tensor.contents.ListFields()]
        if filled:
            raise InvalidInput(
                f"tensor {name} is declared {datatype} but its data is in {filled[0]}; "
                f"send {datatype} data in {field} or fix the datatype"
            )
    expected = prod(shape)
    if len(values) != expected:  # before copying: the declared count is the bounded one
        raise InvalidInput(
            f"input {name} has shape {shape_text(shape)} ({_count_text(expected)} elements) but "
            f"{len(values)} elements of data"
        )
    if datatype == "BYTES":
        return list(values)
    dtype = DATATYPE_TO_NUMPY[datatype]
    if dtype.kind in "iu":
        _check_integer_range(name, datatype, values, dtype)
    array = np.asarray(values, dtype=dtype)
    return array.reshape(shape) if array.size == prod(shape) else array


def _check_integer_range(name: str, datatype: str, values: Any, dtype: np.dtype[Any]) -> None:
    """Protobuf carries INT8/INT16/UINT8/UINT16 in 32-bit fields: a value outside the datatype
    would wrap silently (300 as INT8 is 44)."""
    info = np.iinfo(dtype)
    bad = next((v for v in values if not info.min <= v <= info.max), None)
    if bad is not None:
        raise InvalidInput(
            f"input {name}: {_count_text(int(bad))} is outside the range of {datatype} "
            f"[{info.min}, {info.max}]"
        )


def shape_text(shape: tuple[int, ...]) -> str:
    """A shape for a message: long dimensions shortened, so that it stays readable and short."""
    return "[" + ", ".join(_count_text(d) for d in shape) + "]"


def _count_text(value: int) -> str:
    text = str(value)
    return text if len(text) <= 12 else f"{text[:3]}...({len(text)} digits)"


def _decode_raw(name: str, datatype: str, shape: tuple[int, ...], raw: bytes) -> TensorData:
    if datatype == "BYTES":
        # No more elements are decoded than the shape (bounded by the limits) declares.
        expected = prod(shape)
        items, complete = BytesCodec.split(raw, name, max_items=expected)
        if not complete:
            raise InvalidInput(
                f"input {quote(name)} has shape {shape_text(shape)} ({_count_text(expected)} "
                "elements) but more elements of data"
            )
        return items
    dtype = DATATYPE_TO_NUMPY[datatype].newbyteorder("<")
    if len(raw) % dtype.itemsize:
        raise InvalidInput(
            f"raw contents of tensor {quote(name)} are not a whole number of {datatype} elements"
        )
    array = np.frombuffer(raw, dtype=dtype)
    return array.reshape(shape) if array.size == prod(shape) else array


def _encode_raw(data: TensorData) -> bytes:
    if isinstance(data, list):
        return BytesCodec.encode(data)
    if data.dtype.byteorder in _LITTLE_ENDIAN:  # what a model's outputs are: no conversion
        return data.tobytes()  # C order, whatever the array's layout
    return np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
