"""``loopserve candidates`` for an image model: each image to a file beside the CSV, and a
``path,label,prediction_id,...`` CSV (paths relative to it) that ``loopserve label`` reads once
the labels are filled in."""

from __future__ import annotations

import csv
import hashlib
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from service.cli._labels import CANDIDATE_INFO_COLUMNS
from service.drift import Candidate
from service.errors import InvalidInput

COLUMNS = ("path", "label", "prediction_id", *CANDIDATE_INFO_COLUMNS)


def write_image_candidates(out: Path, candidates: list[Candidate]) -> list[dict[str, Any]]:
    """Write the images to ``<out stem>-images/`` beside ``out`` (named by their content, so a
    second run rewrites the same files) and the CSV to ``out``; the candidates as JSON rows,
    each with the path of its image instead of its bytes."""
    folder = out.with_name(f"{out.stem}-images")
    tmp = out.with_name(out.name + ".tmp")
    rows = []
    try:
        folder.mkdir(exist_ok=True)
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for c in candidates:
                name = hashlib.sha256(c.content).hexdigest()[:16] + _suffix(c.content)
                (folder / name).write_bytes(c.content)
                path = f"{folder.name}/{name}"
                writer.writerow(
                    [
                        path, "", c.prediction_id, c.predicted_label, f"{c.confidence:.4f}",
                        "" if math.isnan(c.atypicality) else f"{c.atypicality:.3f}",
                        f"{c.score:.3f}", c.version,
                    ]
                )  # fmt: skip
                row = {k: v for k, v in asdict(c).items() if k not in ("text", "content")}
                rows.append({"path": str(folder / name), **row})
        os.replace(tmp, out)
    except OSError as exc:
        raise InvalidInput(f"cannot write {out}: {exc.strerror or exc}") from None
    return rows


def _suffix(data: bytes) -> str:
    """The file suffix of an encoded image the server accepted (JPEG, PNG or WebP)."""
    if data.startswith(b"\x89PNG"):
        return ".png"
    if data.startswith(b"\xff\xd8"):
        return ".jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return ".bin"
