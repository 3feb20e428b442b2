"""``loopserve candidates`` for an image model: each image to a file beside the CSV, whose
``path`` column (relative to it) ``loopserve label`` reads once the labels are filled in."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from service.tasks._client import CandidateColumn

COLUMN = "path"


def write_image_candidates(out: Path, payloads: Sequence[str | bytes]) -> CandidateColumn:
    """Write the images to ``<out stem>-images/`` beside ``out``, named by their content (so a
    second run rewrites the same files); the column names each by its path. OSError when a file
    cannot be written."""
    folder = out.with_name(f"{out.stem}-images")
    folder.mkdir(exist_ok=True)
    cells, values = [], []
    for payload in payloads:
        data = payload if isinstance(payload, bytes) else b""
        name = hashlib.sha256(data).hexdigest()[:16] + _suffix(data)
        (folder / name).write_bytes(data)
        cells.append(f"{folder.name}/{name}")
        values.append(str(folder / name))
    return CandidateColumn(COLUMN, cells, values, f" (images in {folder.name}/)")


def _suffix(data: bytes) -> str:
    """The file suffix of an encoded image the server accepted (JPEG, PNG or WebP)."""
    if data.startswith(b"\x89PNG"):
        return ".png"
    if data.startswith(b"\xff\xd8"):
        return ".jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return ".bin"
