"""A corpus of valid and hostile encoded images, generated in memory at test time."""

from __future__ import annotations

import io
import random
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[3]
RED, GREEN, BLUE, WHITE = (220, 20, 20), (20, 200, 20), (20, 20, 220), (255, 255, 255)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def solid(fmt: str, size: tuple[int, int] = (64, 48), color: Any = RED, mode: str = "RGB") -> bytes:
    return encode(Image.new(mode, size, color), fmt)


def halves(
    size: tuple[int, int], left: tuple[int, int, int], right: tuple[int, int, int]
) -> Image.Image:
    """Left half one colour, right half another."""
    image = Image.new("RGB", size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def exif_rotated_jpeg() -> bytes:
    """Stored landscape, left red and right blue, with EXIF orientation 6 (turn 90 degrees
    clockwise to display): shown upright it is red on top, blue below."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(halves((80, 40), RED, BLUE), "JPEG", quality=95, exif=exif)


def palette_with_transparency() -> bytes:
    """A palette PNG whose left half is a transparent (black) entry, right half green."""
    image = Image.new("P", (40, 40), 0)
    image.putpalette([0, 0, 0, *GREEN] + [0] * (3 * 254))
    image.paste(1, (20, 0, 40, 40))
    return encode(image, "PNG", transparency=0)


def rgba_transparent_black() -> bytes:
    return encode(Image.new("RGBA", (32, 32), (0, 0, 0, 0)), "PNG")


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (48, 48), (0, 255, 255, 0)), "JPEG", quality=95)  # red


def png_16bit_gray(value: int = 0xC000) -> bytes:
    return encode(Image.fromarray(np.full((40, 40), value, dtype=np.uint16)), "PNG")


def animated(fmt: str) -> bytes:
    """Two frames, red then blue."""
    frames = [Image.new("RGB", (40, 40), RED), Image.new("RGB", (40, 40), BLUE)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def png_bomb(side: int = 10_000) -> bytes:
    """A valid ``side`` x ``side`` 8-bit gray PNG of zeros: about 100 KB on disk for 10000,
    100 MB once decoded (about 500 MB under Pillow's defaults)."""
    idat = _deflated_zeros(side + 1, side)  # rows of a filter byte and pixels, all 0
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def png_text_bomb(megabytes: int = 200) -> bytes:
    """A small valid PNG with a compressed text chunk that inflates to ``megabytes``."""
    data = solid("PNG", (8, 8))
    idat = data.index(b"IDAT") - 4
    text = _chunk(b"zTXt", b"comment\x00\x00" + _deflated_zeros(2**20, megabytes))
    return data[:idat] + text + data[idat:]


def _deflated_zeros(block: int, count: int) -> bytes:
    """zlib data of ``count`` x ``block`` zero bytes, made without holding them all."""
    compressor = zlib.compressobj(9)
    zeros = bytes(block)
    return b"".join(compressor.compress(zeros) for _ in range(count)) + compressor.flush()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose frame header is rewritten to claim ``width`` x ``height``."""
    data = bytearray(solid("JPEG", (16, 16)))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def zip_archive() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("payload.html", "<script>alert(1)</script>")
    return out.getvalue()


HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"


def random_bytes(n: int = 4096) -> bytes:
    return random.Random(7).randbytes(n)


# Run in a fresh process. Its peak RSS is VmHWM from /proc: ru_maxrss would not do, since Linux
# carries it over from the parent (this test process, torch and all) across fork and exec.
PEAK_RSS_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {here!r})
from hostile_images import solid
from service.errors import InvalidInput
from service.tasks.image import ImageSpec, decode_image

def peak_kib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

decode_image(solid("PNG", (640, 480)), ImageSpec())
data = Path({bomb!r}).read_bytes()
before = peak_kib()
{body}
print(peak_kib() - before)
"""
REFUSE_BOMB = """
try:
    decode_image(data, ImageSpec())
except InvalidInput:
    pass
else:
    sys.exit("bomb accepted")
"""
ALLOCATE_64_MB = "block = bytearray(64 * 2**20); block[::4096] = bytes(len(block[::4096]))"


def peak_rss_growth_kib(body: str, bomb: Path) -> int:
    """How much a fresh process's peak RSS grows while it runs ``body`` (``data`` holds the
    bytes of ``bomb``), after a warm-up decode."""
    script = PEAK_RSS_SCRIPT.format(here=str(Path(__file__).parent), bomb=str(bomb), body=body)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip())


PILLOW_DEFAULTS = """
import io, warnings
from PIL import Image
warnings.simplefilter("ignore")
Image.open(io.BytesIO(data)).convert("RGB")
"""


def jpeg_with_scans(count: int) -> bytes:
    """A JPEG whose header is followed by ``count`` (empty) scans: small, slow to decode."""
    data = solid("JPEG", (16, 16))
    sos = data.index(b"\xff\xda")
    header = data[sos : sos + 2 + struct.unpack_from(">H", data, sos + 2)[0]]
    return data[:sos] + (header + b"\x00") * count + b"\xff\xd9"


def png_with_chunks(count: int) -> bytes:
    """A valid PNG with ``count`` empty ancillary chunks before its image data."""
    data = solid("PNG", (8, 8))
    idat = data.index(b"IDAT") - 4
    return data[:idat] + _chunk(b"teXt", b"") * count + data[idat:]
