"""The ModelInfer input of an image classifier, as Triton, KServe and OpenVINO clients send it:
``image`` as BYTES ``[n]`` of encoded JPEG, PNG or WebP (decoded here), or already preprocessed
UINT8 ``[n, H, W, 3]`` pixels or FP32 ``[n, 3, H, W]`` normalised values at the model's size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from service.domain.loop import NewSample
from service.errors import InvalidInput
from service.tasks._contract import RequestLimits
from service.tasks._outputs import quoted_names
from service.tasks.image._decode import decode_image
from service.tasks.image._options import ImageOptions
from service.tasks.image._samples import validate_image_sample
from service.tasks.image._tensors import preprocessed_batch
from service.types import Tensor, TensorSpec

INPUT = "image"


class ImageInputs:
    """Decodes a request's images; costly, so it runs on a worker thread."""

    decode_in_thread = True
    content_samples = True

    def __init__(self, options: ImageOptions) -> None:
        self._options = options
        self._spec = options.spec()
        self._decode_limits = options.limits()
        s = options.size
        self.limits = RequestLimits(
            options.max_images_per_request, options.max_image_bytes,
            max_tensor_elements=options.max_images_per_request * 3 * s * s,
        )  # fmt: skip
        self._hint = (
            f"send one input tensor named {INPUT!r}: BYTES [n] of encoded JPEG, PNG or WebP, "
            f"UINT8 [n,{s},{s},3] RGB pixels, or FP32 [n,3,{s},{s}] normalised values"
        )

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec(INPUT, "BYTES", (-1,))]

    def validate_sample(self, index: int, sample: NewSample) -> None:
        validate_image_sample(index, sample, self._spec, self._decode_limits)

    def decode(self, inputs: list[Tensor]) -> list[Any]:
        if len(inputs) != 1 or inputs[0].name != INPUT:
            names = quoted_names([t.name for t in inputs]) or "none"
            raise InvalidInput(f"got input tensor(s) {names}; {self._hint}")
        tensor = inputs[0]
        if isinstance(tensor.data, list):
            return self._encoded(tensor)
        if tensor.datatype not in ("UINT8", "FP32"):
            raise InvalidInput(f"input {INPUT!r} has datatype {tensor.datatype}; {self._hint}")
        count = tensor.shape[0] if tensor.shape else 0
        if count > self.limits.max_elements:
            raise InvalidInput(
                f"input {INPUT!r} holds {count} images; at most {self.limits.max_elements} per request"
            )
        batch = preprocessed_batch(np.asarray(tensor.data), self._spec)
        return list(batch)

    def payloads(self, inputs: list[Tensor], items: list[Any]) -> Sequence[str | bytes]:
        """Encoded images as sent (each within max_image_bytes): what a labeler sees and posts
        back as a sample. Preprocessed tensors keep nothing: encoding them would cost
        milliseconds per image on the event loop, FP32 values would first have to be
        denormalised, and a client that preprocesses has the original images."""
        data = inputs[0].data if len(inputs) == 1 else None
        if isinstance(data, list) and len(data) == len(items):
            return list(data)
        return [""] * len(items)

    def _encoded(self, tensor: Tensor) -> list[Any]:
        data = tensor.data
        assert isinstance(data, list)
        if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise InvalidInput(f"input {INPUT!r} has shape {list(tensor.shape)}; {self._hint}")
        if not data:
            raise InvalidInput(f"input {INPUT!r} holds no images; {self._hint} with n >= 1")
        if len(data) > self.limits.max_elements:
            raise InvalidInput(
                f"input {INPUT!r} holds {len(data)} images; at most {self.limits.max_elements} "
                "per request"
            )
        return [self._image(i, raw) for i, raw in enumerate(data)]

    def _image(self, index: int, raw: bytes) -> Any:
        try:
            return decode_image(raw, self._spec, self._decode_limits)
        except InvalidInput as exc:
            raise InvalidInput(f"image[{index}]: {exc}") from None
