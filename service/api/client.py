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
from service.errors import LoopserveError
from service.types import InferenceRequest, Tensor


class ClientError(LoopserveError):
    """The server answered with an error status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Classification:
    text: str
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

    def classify(self, model: str, texts: list[str]) -> list[Classification]:
        tensor = Tensor("text", "BYTES", (len(texts),), [t.encode() for t in texts])
        return self._classify(model, tensor, texts)

    def classify_images(
        self, model: str, images: list[bytes], names: list[str]
    ) -> list[Classification]:
        """Encoded JPEG/PNG/WebP ``images``, one request; each result's ``text`` is its name."""
        return self._classify(model, Tensor("image", "BYTES", (len(images),), images), names)

    def model_task(self, model: str) -> str:
        """The task a model declares in its metadata (older servers name none: text)."""
        try:
            message = self._stub.ModelMetadata(
                pb.ModelMetadataRequest(name=model), timeout=self._timeout
            )
        except grpc.RpcError as exc:
            raise ClientError(exc.code().name, exc.details() or "") from None
        return message.properties.get("task") or "text-classification"

    def _classify(self, model: str, tensor: Tensor, inputs: list[str]) -> list[Classification]:
        """``tensor`` classified; ``inputs`` name its elements in the results."""
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
        names = json.loads(probs_tensor.parameters["labels"])
        probs = np.asarray(probs_tensor.data).reshape(probs_tensor.shape)
        assert isinstance(labels_tensor.data, list)
        return [
            Classification(
                text, label.decode(), {n: float(p) for n, p in zip(names, row, strict=True)}
            )
            for text, label, row in zip(inputs, labels_tensor.data, probs, strict=True)
        ]
