"""What an encoded image is, read from its bytes alone, before any decoder runs.

The leading bytes must be the signature of an allowed format (JPEG, PNG, WebP). Then the file's
own structure is walked without decompressing anything (PNG chunks, JPEG markers and segments,
WebP RIFF chunks) to read the size from the header and to find where the image ends.

A *polyglot* here is a file with any byte after the end of its image stream: after the PNG IEND
chunk, after the JPEG end-of-image marker that follows the last scan, or beyond the length the
WebP RIFF header declares. That is where a ZIP archive, an HTML page or a second image is
appended to a valid picture (the file then opens as both). Such files are refused, and so are
JPEGs that carry further pictures or a video after the first (MPO, motion photos), which are built
the same way. Bytes inside the
image's own metadata (EXIF, comments, text chunks) are not inspected: they are never served back.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from service.errors import InvalidInput

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
SEND = "send JPEG, PNG or WebP"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Bounds on the walk over a hostile file, ample for any encoder: chunks or segments per file
# (PNG encoders write IDAT chunks of 8 KiB or more), and JPEG scans (a progressive JPEG has about
# ten; thousands of tiny scans make a small file that is slow to decode).
MAX_CHUNKS = 65_536
MAX_JPEG_SCANS = 100
# Formats recognised by their signature only to name them in the refusal.
_REFUSED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP"),
    (b"\xff\x0a", "JPEG XL"),
    (b"<", "HTML or XML"),
)


@dataclass(frozen=True)
class Container:
    """An encoded image's format and header size; ``frames`` > 1 for an animation."""

    format: str
    width: int
    height: int
    frames: int = 1


def inspect(data: bytes) -> Container:
    """The format and size of ``data``; InvalidInput when it is not a complete, single JPEG,
    PNG or WebP image with nothing appended."""
    walk = _walker(data)
    container = walk(data)
    if container.width <= 0 or container.height <= 0:
        raise InvalidInput(f"{container.format} header gives no image size; {SEND}")
    return container


def _walker(data: bytes) -> Callable[[bytes], Container]:
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg
    if data.startswith(_PNG_SIGNATURE):
        return _png
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp
    for signature, name in _REFUSED_SIGNATURES:
        if data.startswith(signature):
            raise InvalidInput(f"{name} files are not accepted; {SEND}")
    if data[4:8] == b"ftyp":
        raise InvalidInput(f"HEIC/AVIF images are not accepted; {SEND}")
    raise InvalidInput(f"not an image in an accepted format (unrecognised leading bytes); {SEND}")


def _truncated(name: str, what: str) -> InvalidInput:
    return InvalidInput(f"{name} image is truncated ({what}); send the complete file")


def _too_many(name: str, what: str, limit: int = MAX_CHUNKS) -> InvalidInput:
    return InvalidInput(f"{name} image has more than {limit} {what}; {SEND}, re-encoded")


def _appended(name: str, extra: int, end: str) -> InvalidInput:
    return InvalidInput(
        f"{name} image has {extra} bytes after its {end} (another file appended to it); "
        "send the image alone, re-encoded if needed"
    )


# --- PNG ------------------------------------------------------------------------------------------


def _png(data: bytes) -> Container:
    pos, size, frames = len(_PNG_SIGNATURE), (0, 0), 1
    for _ in range(MAX_CHUNKS):
        if pos + 12 > len(data):
            raise _truncated("PNG", "it ends before its IEND chunk")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            raise _truncated("PNG", f"chunk {kind!r} runs past the end of the file")
        if pos == len(_PNG_SIGNATURE) and (kind != b"IHDR" or length != 13):
            raise InvalidInput(f"corrupt PNG: it does not start with its IHDR header; {SEND}")
        if kind == b"IHDR":
            size = struct.unpack_from(">II", data, pos + 8)
        elif kind == b"acTL" and length >= 4:
            frames = struct.unpack_from(">I", data, pos + 8)[0]
        elif kind == b"IEND":
            if end != len(data):
                raise _appended("PNG", len(data) - end, "IEND chunk")
            return Container("PNG", size[0], size[1], max(frames, 1))
        pos = end
    raise _too_many("PNG", "chunks")


# --- JPEG -----------------------------------------------------------------------------------------

# Start-of-frame markers (all but DHT C4, JPG C8 and DAC CC); their segment holds the size.
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_SOS, _EOI, _SOI = 0xDA, 0xD9, 0xD8
# Inside entropy-coded data 0xFF is followed by 0x00 (a stuffed byte) or a restart marker; any
# other second byte is the marker that ends the scan.
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")


def _jpeg(data: bytes) -> Container:
    pos, size, scans, steps = 2, (0, 0), 0, 0
    while pos + 1 < len(data):
        steps += 1
        if steps > MAX_CHUNKS:
            raise _too_many("JPEG", "segments")
        if data[pos] != 0xFF:
            raise InvalidInput(f"corrupt JPEG: no marker at byte {pos}; {SEND}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == _EOI:
            end = pos + 2
            if end != len(data):
                raise _appended("JPEG", len(data) - end, "end-of-image marker")
            return Container("JPEG", size[1], size[0])
        if marker < 0xC0 or marker == _SOI or 0xD0 <= marker <= 0xD7:
            raise InvalidInput(f"corrupt JPEG: unexpected marker {marker:#04x}; {SEND}")
        if pos + 4 > len(data):
            break
        length = struct.unpack_from(">H", data, pos + 2)[0]
        end = pos + 2 + length
        if length < 2:
            raise InvalidInput(f"corrupt JPEG: segment of length {length} at byte {pos}; {SEND}")
        if end > len(data):
            break
        if marker in _SOF and end - pos >= 9:
            size = struct.unpack_from(">HH", data, pos + 5)  # height, width
        if marker == _SOS:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise _too_many("JPEG", "scans", MAX_JPEG_SCANS)
            scan_end = _SCAN_END.search(data, end)
            if scan_end is None:
                break
            end = scan_end.start()
        pos = end
    raise _truncated("JPEG", "it ends before its end-of-image marker")


# --- WebP -----------------------------------------------------------------------------------------


def _webp(data: bytes) -> Container:
    declared = 8 + struct.unpack_from("<I", data, 4)[0]
    if declared > len(data):
        raise _truncated("WebP", "shorter than its RIFF header declares")
    if declared < len(data):
        raise _appended("WebP", len(data) - declared, "RIFF container")
    pos, size, frames, first = 12, (0, 0), 0, True
    for _ in range(MAX_CHUNKS):
        if pos + 8 > declared:
            break
        kind, length = struct.unpack_from("<4sI", data, pos)
        payload = pos + 8
        if payload + length > declared:
            raise _truncated("WebP", f"chunk {kind!r} runs past the end of the file")
        if first:
            size = _webp_size(kind, data[payload : payload + min(length, 10)])
            first = False
        frames += kind == b"ANMF"
        pos = payload + length + (length & 1)  # chunks are padded to an even length
    else:
        raise _too_many("WebP", "chunks")
    if first:
        raise _truncated("WebP", "no image chunk")
    return Container("WEBP", size[0], size[1], max(frames, 1))


def _webp_size(kind: bytes, head: bytes) -> tuple[int, int]:
    """Canvas width and height from the first chunk: extended, lossy or lossless."""
    if kind == b"VP8X" and len(head) >= 10:
        width = int.from_bytes(head[4:7], "little") + 1
        return width, int.from_bytes(head[7:10], "little") + 1
    if kind == b"VP8 " and len(head) >= 10 and head[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", head, 6)
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and len(head) >= 5 and head[0] == 0x2F:
        bits = int.from_bytes(head[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    raise InvalidInput(f"corrupt WebP: unknown first chunk {kind!r}; {SEND}")
