"""Decoding untrusted encoded images: what is accepted and how, and every refusal's message."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hostile_images import (
    ALLOCATE_64_MB,
    BLUE,
    GREEN,
    HTML,
    RED,
    REFUSE_BOMB,
    WHITE,
    animated,
    cmyk_jpeg,
    encode,
    exif_rotated_jpeg,
    halves,
    jpeg_claiming,
    jpeg_with_scans,
    palette_with_transparency,
    peak_rss_growth_kib,
    png_16bit_gray,
    png_bomb,
    png_text_bomb,
    png_with_chunks,
    random_bytes,
    rgba_transparent_black,
    solid,
    zip_archive,
)
from PIL import Image

from service.errors import ConfigError, InvalidInput
from service.tasks.image import DecodeLimits, ImageSpec, decode_image, decode_pixels, inspect

SPEC = ImageSpec(size=32)


def close(pixel: np.ndarray, color: tuple[int, int, int], tolerance: int = 12) -> bool:
    return bool(np.abs(pixel.astype(int) - np.array(color)).max() <= tolerance)


# --- accepted inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_each_allowed_format_gives_normalised_fp32_at_the_model_size(fmt: str) -> None:
    tensor = decode_image(solid(fmt, (64, 48), RED), SPEC)
    assert tensor.dtype == np.float32
    assert tensor.shape == (3, 32, 32)
    assert tensor.flags.c_contiguous
    expected = (np.array(RED) / 255 - np.array(SPEC.mean)) / np.array(SPEC.std)
    np.testing.assert_allclose(tensor[:, 16, 16], expected, atol=0.1)


def test_resize_keeps_the_centre_square_of_the_shorter_side() -> None:
    # 96x32, left third blue, middle red, right third blue: the centre crop is red only.
    image = Image.new("RGB", (96, 32), BLUE)
    image.paste(RED, (32, 0, 64, 32))
    pixels = decode_pixels(encode(image, "PNG"), ImageSpec(size=32, crop_fraction=1.0))
    assert pixels.shape == (32, 32, 3)
    assert close(pixels[16, 1], RED) and close(pixels[16, 30], RED)


def test_crop_fraction_resizes_beyond_the_crop_first() -> None:
    # 64x64: left half red, right half blue. With crop 0.5 the 32 px window sees the middle.
    pixels = decode_pixels(
        encode(halves((64, 64), RED, BLUE), "PNG"), ImageSpec(size=32, crop_fraction=0.5)
    )
    assert close(pixels[16, 2], RED) and close(pixels[16, 29], BLUE)


def test_exif_orientation_is_applied() -> None:
    pixels = decode_pixels(exif_rotated_jpeg(), ImageSpec(size=32, crop_fraction=1.0))
    assert close(pixels[3, 16], RED, 40) and close(pixels[28, 16], BLUE, 40)
    # Not the stored orientation, left red and right blue:
    assert not close(pixels[16, 28], BLUE, 40)


def test_palette_transparency_is_composited_on_white() -> None:
    pixels = decode_pixels(palette_with_transparency(), ImageSpec(size=32, crop_fraction=1.0))
    assert close(pixels[16, 2], WHITE) and close(pixels[16, 29], GREEN)


def test_transparent_black_rgba_becomes_white_not_black() -> None:
    pixels = decode_pixels(rgba_transparent_black(), SPEC)
    assert close(pixels[16, 16], WHITE, 0)


def test_cmyk_jpeg_becomes_rgb() -> None:
    pixels = decode_pixels(cmyk_jpeg(), SPEC)
    assert close(pixels[16, 16], (255, 0, 0), 30)


def test_sixteen_bit_gray_png_keeps_its_brightness() -> None:
    pixels = decode_pixels(png_16bit_gray(0xC000), SPEC)
    assert close(pixels[16, 16], (0xC0, 0xC0, 0xC0), 1)


def test_grayscale_jpeg_becomes_three_channels() -> None:
    pixels = decode_pixels(solid("JPEG", (40, 40), 128, mode="L"), SPEC)
    assert close(pixels[16, 16], (128, 128, 128), 2)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animation_uses_its_first_frame(fmt: str) -> None:
    data = animated(fmt)
    assert inspect(data).frames == 2
    assert close(decode_pixels(data, SPEC)[16, 16], RED, 20)


def test_large_jpeg_is_decoded_at_reduced_scale_to_the_same_picture() -> None:
    big = encode(halves((1600, 1200), RED, BLUE), "JPEG", quality=90)
    pixels = decode_pixels(big, ImageSpec(size=32, crop_fraction=1.0))
    assert close(pixels[16, 2], RED, 20) and close(pixels[16, 29], BLUE, 20)


def test_a_few_scans_and_chunks_are_fine() -> None:
    assert inspect(jpeg_with_scans(3)).format == "JPEG"
    assert close(decode_pixels(png_with_chunks(100), SPEC)[4, 4], RED)


@pytest.mark.parametrize("claim", ["image/png", ".png", "PNG", "png"])
def test_a_true_format_claim_is_accepted(claim: str) -> None:
    assert decode_image(solid("PNG"), SPEC, claimed_format=claim).shape == (3, 32, 32)


# --- refusals -------------------------------------------------------------------------------------

Case = tuple[str, Callable[[], bytes], str]
REFUSED: list[Case] = [
    ("empty", lambda: b"", "image is empty (0 bytes); send JPEG, PNG or WebP"),
    ("random bytes", random_bytes, "not an image in an accepted format"),
    ("truncated JPEG", lambda: solid("JPEG", (64, 64))[:300], "JPEG image is truncated"),
    ("JPEG without EOI", lambda: solid("JPEG")[:-2], "JPEG image is truncated"),
    (
        "truncated PNG",
        lambda: solid("PNG")[:-12],
        "PNG image is truncated (it ends before its IEND",
    ),
    ("PNG cut in a chunk", lambda: _noise("PNG")[:200], "PNG image is truncated (chunk b'IDAT'"),
    ("truncated WebP", lambda: solid("WEBP")[:-10], "WebP image is truncated"),
    ("GIF", lambda: solid("GIF"), "GIF files are not accepted; send JPEG, PNG or WebP"),
    ("BMP", lambda: solid("BMP"), "BMP files are not accepted"),
    ("TIFF", lambda: solid("TIFF"), "TIFF files are not accepted"),
    ("ZIP", zip_archive, "ZIP files are not accepted"),
    ("HTML", lambda: HTML, "HTML or XML files are not accepted"),
    ("PNG + ZIP", lambda: solid("PNG") + zip_archive(), "bytes after its IEND chunk (another file"),
    ("PNG + HTML", lambda: solid("PNG") + HTML, f"PNG image has {len(HTML)} bytes after its IEND"),
    ("JPEG + ZIP", lambda: solid("JPEG") + zip_archive(), "JPEG image has"),
    ("JPEG + HTML", lambda: solid("JPEG") + HTML, "bytes after its end-of-image marker"),
    ("WebP + HTML", lambda: solid("WEBP") + HTML, "bytes after its RIFF container"),
    ("PNG bomb", png_bomb, "image is 10000x10000 = 100000000 pixels, over the limit of 25000000"),
    ("PNG text bomb", png_text_bomb, "PNG image could not be decoded (ValueError"),
    ("JPEG claiming 30000x30000", lambda: jpeg_claiming(30000, 30000), "over the limit"),
    ("1x100000", lambda: solid("PNG", (1, 100_000), 0, "L"), "an aspect ratio of 100000:1"),
    ("corrupt PNG data", lambda: _corrupt_idat(), "PNG image could not be decoded"),
    ("101 JPEG scans", lambda: jpeg_with_scans(101), "JPEG image has more than 100 scans"),
    ("65537 PNG chunks", lambda: png_with_chunks(65_537), "PNG image has more than 65536 chunks"),
    (
        "a JPEG header on PNG data",
        lambda: b"\xff\xd8\xff" + solid("PNG"),
        "corrupt JPEG",
    ),
]


def _noise(fmt: str) -> bytes:
    return encode(Image.effect_noise((64, 64), 50), fmt)


def _corrupt_idat() -> bytes:
    data = bytearray(_noise("PNG"))
    start = data.index(b"IDAT") + 8
    data[start : start + 40] = bytes(range(40))
    return bytes(data)


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_hostile_input_is_refused_with_a_message_that_says_what_to_send(
    make: Callable[[], bytes], message: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        decode_image(make(), SPEC)
    assert message in str(refused.value)
    assert len(str(refused.value)) < 300


def test_oversized_bytes_are_refused_before_parsing() -> None:
    data = solid("PNG")
    with pytest.raises(InvalidInput, match=rf"image is {len(data)} bytes, over the limit of 100;"):
        decode_image(data, SPEC, DecodeLimits(max_bytes=100))


def test_pixel_limit_is_per_call() -> None:
    data = solid("PNG", (64, 48))
    with pytest.raises(InvalidInput, match="64x48 = 3072 pixels, over the limit of 3000"):
        decode_image(data, SPEC, DecodeLimits(max_pixels=3000))
    assert decode_image(data, SPEC).shape == (3, 32, 32)  # the default call is unaffected
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's process-wide setting untouched


@pytest.mark.parametrize(
    ("data", "claim", "message"),
    [
        (lambda: solid("PNG"), "image/jpeg", "file is declared as JPEG but its bytes are PNG"),
        (lambda: solid("JPEG"), ".webp", "file is declared as WEBP but its bytes are JPEG"),
        (lambda: solid("PNG"), "image/gif", "format 'image/gif' is not accepted; send JPEG"),
    ],
)
def test_a_false_format_claim_is_refused(
    data: Callable[[], bytes], claim: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_image(data(), SPEC, claimed_format=claim)


def test_limits_and_spec_are_checked_at_construction() -> None:
    with pytest.raises(ConfigError, match="max_pixels must be between 1 and 89478485"):
        DecodeLimits(max_pixels=200_000_000)
    with pytest.raises(ConfigError, match="image size 4 is out of range"):
        ImageSpec(size=4)


@pytest.mark.parametrize("make", [png_bomb, png_text_bomb], ids=["pixels", "text"])
def test_bomb_is_refused_without_growing_memory(tmp_path: Path, make: Callable[[], bytes]) -> None:
    """Peak RSS of a fresh process, after a warm-up decode, grows by less than 50 MB while it
    refuses a 10000x10000 PNG (Pillow's defaults would decode it at about 480 MB) or a PNG whose
    text chunk inflates to 200 MB. The same measurement sees a 64 MB allocation."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(make())
    assert peak_rss_growth_kib(REFUSE_BOMB, bomb) < 50 * 1024
    assert peak_rss_growth_kib(ALLOCATE_64_MB, bomb) >= 60 * 1024


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_damaged_files_give_invalid_input_or_an_image_never_another_error(fmt: str) -> None:
    """Bytes flipped, cut or duplicated at random places in a valid file."""
    original = encode(Image.effect_noise((48, 40), 60).convert("RGB"), fmt)
    rng = random.Random(fmt)
    for _ in range(100):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            action = rng.choice(["flip", "cut", "repeat"])
            if action == "flip":
                data[at] ^= 1 << rng.randrange(8)
            elif action == "cut":
                del data[at : at + rng.randint(1, 16)]
            else:
                data[at:at] = data[at : at + rng.randint(1, 16)]
        try:
            tensor = decode_image(bytes(data), SPEC)
        except InvalidInput:
            continue
        assert tensor.shape == (3, 32, 32) and np.isfinite(tensor).all()
