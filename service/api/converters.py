"""Open Inference Protocol messages ⇄ loopserve types. One converter per message.

``to_types`` decodes a protobuf message into service types (validating what the wire allows to
be malformed); ``from_types`` encodes service types into a protobuf message. Outputs are always
sent in ``raw_output_contents`` (as Triton does); inputs are accepted typed or raw.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, MutableMapping
from math import prod
from typing import Any

import numpy as np

from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.errors import InvalidInput
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
    def decode(raw: bytes, name: str) -> list[bytes]:
        items: list[bytes] = []
        offset, view = 0, memoryview(raw)
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise InvalidInput(f"raw contents of input {name!r} end inside a length prefix")
            (length,) = _LENGTH.unpack_from(raw, offset)
            offset += 4
            if offset + length > len(raw):
                raise InvalidInput(
                    f"raw contents of input {name!r}: element {len(items)} overruns the buffer"
                )
            items.append(bytes(view[offset : offset + length]))
            offset += length
        return items

    @staticmethod
    def encode(items: list[bytes]) -> bytes:
        return b"".join(_LENGTH.pack(len(item)) + item for item in items)


class InferInputTensorConverter:
    @staticmethod
    def to_types(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> Tensor:
        shape = tuple(int(d) for d in tensor.shape)
        if any(d < 0 for d in shape):
            raise InvalidInput(
                f"input {tensor.name!r} has a negative dimension in shape {list(shape)}"
            )
        datatype = tensor.datatype
        if datatype != "BYTES" and datatype not in DATATYPE_TO_NUMPY:
            raise InvalidInput(f"input {tensor.name!r} has unknown datatype {datatype!r}")
        has_typed = tensor.HasField("contents") and _typed_count(tensor, datatype) > 0
        if raw is not None and has_typed:
            raise InvalidInput(
                f"input {tensor.name!r} has both contents and raw_input_contents; send one"
            )
        data = (
            _decode_raw(tensor.name, datatype, shape, raw)
            if raw is not None
            else _decode_typed(tensor, datatype, shape)
        )
        count = len(data) if isinstance(data, list) else data.size
        if count != prod(shape):
            raise InvalidInput(
                f"input {tensor.name!r} has shape {list(shape)} ({prod(shape)} elements) but "
                f"{count} elements of data"
            )
        return Tensor(
            tensor.name, datatype, shape, data, InferParameterConverter.to_types(tensor.parameters)
        )


class ModelInferRequestConverter:
    @staticmethod
    def to_types(request: pb.ModelInferRequest) -> InferenceRequest:
        raw = list(request.raw_input_contents)
        if raw and len(raw) != len(request.inputs):
            raise InvalidInput(
                f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; send one per input, in order"
            )
        inputs = [
            InferInputTensorConverter.to_types(tensor, raw[i] if raw else None)
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


def labels_of(metadata: ModelMetadata) -> list[str]:
    return list(json.loads(metadata.properties.get("labels", "[]")))


def _tensor_metadata(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=spec.name, datatype=spec.datatype, shape=list(spec.shape)
    )


def _typed_count(tensor: Any, datatype: str) -> int:
    field = _CONTENTS_FIELD.get(datatype)
    return len(getattr(tensor.contents, field)) if field else 0


def _decode_typed(tensor: Any, datatype: str, shape: tuple[int, ...]) -> TensorData:
    field = _CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(
            f"tensor {tensor.name!r}: datatype {datatype} can only be sent as raw contents"
        )
    values = getattr(tensor.contents, field)
    if not values:
        filled = [f.name for f, _ in tensor.contents.ListFields()]
        if filled:
            raise InvalidInput(
                f"tensor {tensor.name!r} is declared {datatype} but its data is in {filled[0]}; "
                f"send {datatype} data in {field} or fix the datatype"
            )
    if datatype == "BYTES":
        return list(values)
    array = np.asarray(values, dtype=DATATYPE_TO_NUMPY[datatype])
    return array.reshape(shape) if array.size == prod(shape) else array


def _decode_raw(name: str, datatype: str, shape: tuple[int, ...], raw: bytes) -> TensorData:
    if datatype == "BYTES":
        return BytesCodec.decode(raw, name)
    dtype = DATATYPE_TO_NUMPY[datatype].newbyteorder("<")
    if len(raw) % dtype.itemsize:
        raise InvalidInput(
            f"raw contents of tensor {name!r} are not a whole number of {datatype} elements"
        )
    array = np.frombuffer(raw, dtype=dtype)
    return array.reshape(shape) if array.size == prod(shape) else array


def _encode_raw(data: TensorData) -> bytes:
    if isinstance(data, list):
        return BytesCodec.encode(data)
    return np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
