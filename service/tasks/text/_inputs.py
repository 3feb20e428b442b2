"""The ModelInfer input of a text classifier: one BYTES tensor of UTF-8 texts."""

from __future__ import annotations

from typing import Any

from service.domain.loop import NewSample
from service.errors import InvalidInput
from service.tasks._contract import RequestLimits
from service.tasks._outputs import quoted_names
from service.tasks.text._samples import validate_text_sample
from service.types import Tensor, TensorSpec

INPUT = "text"
INPUT_HINT = f"send one input tensor named {INPUT!r}, datatype BYTES, shape [n] of UTF-8 texts"


class TextInputs:
    """Validates the request's texts; cheap enough to run on the event loop."""

    decode_in_thread = False
    content_samples = False

    def __init__(self, limits: RequestLimits) -> None:
        self.limits = limits

    def validate_sample(self, index: int, sample: NewSample) -> None:
        validate_text_sample(index, sample, self.limits.max_element_bytes)

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec(INPUT, "BYTES", (-1,))]

    def decode(self, inputs: list[Tensor]) -> list[Any]:
        if len(inputs) != 1 or inputs[0].name != INPUT:
            names = quoted_names([t.name for t in inputs]) or "none"
            raise InvalidInput(f"got input tensor(s) {names}; {INPUT_HINT}")
        tensor = inputs[0]
        if tensor.datatype != "BYTES" or not isinstance(tensor.data, list):
            raise InvalidInput(f"input {INPUT!r} has datatype {tensor.datatype}; {INPUT_HINT}")
        if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
            raise InvalidInput(f"input {INPUT!r} has shape {list(tensor.shape)}; {INPUT_HINT}")
        count = len(tensor.data)
        if count == 0:
            raise InvalidInput(f"input {INPUT!r} holds no texts; {INPUT_HINT} with n >= 1")
        if count > self.limits.max_elements:
            raise InvalidInput(
                f"input {INPUT!r} holds {count} texts; at most {self.limits.max_elements} per request"
            )
        return [self._text(i, raw) for i, raw in enumerate(tensor.data)]

    def payloads(self, inputs: list[Tensor], items: list[Any]) -> list[str]:
        return items

    def _text(self, index: int, raw: bytes) -> str:
        if len(raw) > self.limits.max_element_bytes:
            raise InvalidInput(
                f"text[{index}] is {len(raw)} bytes; at most {self.limits.max_element_bytes} per text"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"text[{index}] is not valid UTF-8") from None
        if not text.strip():
            raise InvalidInput(f"text[{index}] is empty; send non-blank texts")
        return text
