"""Tiny labeled images drawn in the test: a shape of the label's colour on a noisy background."""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"red": (210, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 210)}


def image(label: str, seed: int, size: int = 40) -> bytes:
    rng = random.Random(f"{label}-{seed}")
    grey = rng.randint(90, 170)
    picture = Image.new("RGB", (size, size), (grey, grey, grey))
    draw = ImageDraw.Draw(picture)
    for _ in range(30):  # background speckle
        x, y = rng.randrange(size), rng.randrange(size)
        shade = rng.randint(60, 200)
        draw.point((x, y), (shade, shade, shade))
    r = rng.randint(size // 4, size // 3)
    cx, cy = rng.randint(r, size - r), rng.randint(r, size - r)
    box = (cx - r, cy - r, cx + r, cy + r)
    colour = tuple(min(255, max(0, c + rng.randint(-25, 25))) for c in COLOURS[label])
    if rng.random() < 0.5:
        draw.ellipse(box, fill=colour)
    else:
        draw.rectangle(box, fill=colour)
    out = io.BytesIO()
    picture.save(out, "PNG" if seed % 2 else "JPEG")
    return out.getvalue()


def suffix(data: bytes) -> str:
    return ".png" if data.startswith(b"\x89PNG") else ".jpg"


def folder(directory: Path, labels: list[str], per_label: int, start: int = 0) -> Path:
    """``directory/<label>/<n>.png|jpg`` (the ImageFolder layout)."""
    for label in labels:
        (directory / label).mkdir(parents=True, exist_ok=True)
        for n in range(start, start + per_label):
            data = image(label, n)
            (directory / label / f"{n}{suffix(data)}").write_bytes(data)
    return directory


def csv_listing(directory: Path, labels: list[str], per_label: int) -> Path:
    """``directory/images/*`` and ``directory/seed.csv`` of ``path,label`` relative to it."""
    (directory / "images").mkdir(parents=True, exist_ok=True)
    rows = ["path,label"]
    for label in labels:
        for n in range(per_label):
            data = image(label, n)
            name = f"images/{label}-{n}{suffix(data)}"
            (directory / name).write_bytes(data)
            rows.append(f"{name},{label}")
    path = directory / "seed.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path
