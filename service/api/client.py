"""A small Open Inference Protocol client used by the CLI (any standard V2 client works too)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import grpc
import numpy as np

from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.api.channel import ChannelOptions, open_channel
from service.api.converters import ModelInferRequestConverter, ModelInferResponseConverter
from service.domain.versions import DEFAULT_TASK
from service.errors import LoopserveError
from service.types import InferenceRequest, Tensor


class ClientError(LoopserveError):
    """The server answered with an error status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Classification:
    name: str  # how the caller named the input (the text itself, a file)
    label: str
    probabilities: dict[str, float]


class InferenceClient:
    def __init__(
        self, address: str, timeout: float = 30.0, options: ChannelOptions | None = None
    ) -> None:
        """``options``: TLS and token (default plaintext without a token)."""
        self._channel = open_channel(address, options)
        self._stub = GRPCInferenceServiceStub(self._channel)
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def model_task(self, model: str) -> str:
        """The task a model declares in its metadata (older servers name none: the default)."""
        try:
            message = self._stub.ModelMetadata(
                pb.ModelMetadataRequest(name=model), timeout=self._timeout
            )
        except grpc.RpcError as exc:
            raise ClientError(exc.code().name, exc.details() or "") from None
        return message.properties.get("task") or DEFAULT_TASK

    def classify(self, model: str, tensor: Tensor, names: list[str]) -> list[Classification]:
        """``tensor`` (a task's input, ``service.tasks.ClientSide.request``) classified in one
        request; ``names`` name its elements in the results."""
        request = InferenceRequest(
            model=model, version="", id="", inputs=[tensor], outputs=["label", "probabilities"]
        )
        try:
            message = self._stub.ModelInfer(
                ModelInferRequestConverter.from_types(request), timeout=self._timeout
            )
        except grpc.RpcError as exc:
            raise ClientError(exc.code().name, exc.details() or "") from None
        response = ModelInferResponseConverter.to_types(message)
        outputs = {t.name: t for t in response.outputs}
        labels_tensor, probs_tensor = outputs["label"], outputs["probabilities"]
        labels = json.loads(probs_tensor.parameters["labels"])
        probs = np.asarray(probs_tensor.data).reshape(probs_tensor.shape)
        assert isinstance(labels_tensor.data, list)
        return [
            Classification(
                name, label.decode(), {n: float(p) for n, p in zip(labels, row, strict=True)}
            )
            for name, label, row in zip(names, labels_tensor.data, probs, strict=True)
        ]
