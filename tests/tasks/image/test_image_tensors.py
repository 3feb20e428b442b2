"""Preprocessed image tensors: UINT8 [n,H,W,3] pixels and FP32 [n,3,H,W] normalised values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hostile_images import encode, halves

from service.errors import InvalidInput
from service.tasks.image import ImageSpec, decode_image, decode_pixels, preprocessed_batch

SPEC = ImageSpec(size=32)
SEND = "send UINT8 [n,32,32,3] RGB pixels or FP32 [n,3,32,32] normalised values"


def test_uint8_pixels_are_normalised_as_a_decoded_image_is() -> None:
    data = encode(halves((64, 48), (200, 30, 30), (30, 30, 200)), "PNG")
    pixels = decode_pixels(data, SPEC)
    batch = preprocessed_batch(np.stack([pixels, pixels]), SPEC)
    assert batch.dtype == np.float32 and batch.shape == (2, 3, 32, 32)
    np.testing.assert_array_equal(batch[1], decode_image(data, SPEC))


def test_fp32_values_pass_through() -> None:
    values = np.random.default_rng(0).standard_normal((3, 3, 32, 32), np.float32)
    np.testing.assert_array_equal(preprocessed_batch(values, SPEC), values)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((2, 3, 32, 32), np.uint8), f"UINT8 image tensor has shape [2,3,32,32]; {SEND}"),
        (np.zeros((2, 64, 64, 3), np.uint8), "UINT8 image tensor has shape [2,64,64,3]"),
        (np.zeros((32, 32, 3), np.uint8), "UINT8 image tensor has shape [32,32,3]"),
        (np.zeros((1, 32, 32, 3), np.float32), f"FP32 image tensor has shape [1,32,32,3]; {SEND}"),
        (np.zeros((1, 3, 32, 32), np.float64), f"image tensor has datatype float64; {SEND}"),
        (np.zeros((0, 32, 32, 3), np.uint8), "image tensor holds no images (batch size 0)"),
        (np.full((1, 3, 32, 32), np.nan, np.float32), "FP32 image tensor holds NaN or infinite"),
        (np.full((1, 3, 32, 32), np.inf, np.float32), "NaN or infinite values"),
    ],
)
def test_other_tensors_are_refused_with_what_to_send(
    array: np.ndarray[Any, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        preprocessed_batch(array, SPEC)
    assert message in str(refused.value)
