"""Draw the part-inspection seed images: machined parts (washers and plates) under varied
lighting, without a defect ("ok") or with a scratch, a spot or a crack.

    python models/part-inspection/generate_seed.py OUT_DIR [--per-class 60] [--seed 0]

Writes OUT_DIR/<label>/<label>-NNN.jpg (128 x 128). The same seed draws the same images, so the
repository keeps this script rather than the images; ``loopserve init part-inspection`` runs it
when the seed folder is missing.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter

LABELS = ("ok", "scratch", "spot", "crack")
SIZE = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for label in LABELS:
        folder = args.out / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(args.per_class):
            image = draw(label, rng)
            image.save(folder / f"{label}-{i:03d}.jpg", quality=90)
    print(f"wrote {args.per_class * len(LABELS)} images to {args.out}")


def draw(label: str, rng: np.random.Generator) -> Image.Image:
    """One part under random lighting, with ``label``'s defect on its surface."""
    surface = _lighting(rng)
    image = Image.fromarray(surface, "RGB")
    mask = _part_mask(rng)
    metal = Image.fromarray(_metal(rng), "RGB")
    image.paste(metal, (0, 0), mask)
    defect = Image.new("L", (SIZE, SIZE), 0)
    if label == "scratch":
        _scratch(ImageDraw.Draw(defect), rng)
    elif label == "spot":
        _spot(ImageDraw.Draw(defect), rng)
    elif label == "crack":
        _crack(ImageDraw.Draw(defect), rng)
    if label != "ok":
        # Defects only show on the part, not on the background.
        defect = Image.fromarray(np.minimum(np.asarray(defect), np.asarray(mask)), "L")
        shade = _defect_colour(label, rng)
        image.paste(Image.new("RGB", (SIZE, SIZE), shade), (0, 0), defect)
    noise = rng.normal(0, rng.uniform(2, 7), (SIZE, SIZE, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB").filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))


def _lighting(rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """A dark bench lit from a random side: a linear gradient of random strength and tint."""
    angle = rng.uniform(0, 2 * math.pi)
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE - 0.5
    ramp = x * math.cos(angle) + y * math.sin(angle)
    base = rng.uniform(30, 90) + rng.uniform(10, 60) * ramp
    tint = rng.uniform(0.9, 1.1, 3)
    pixels: npt.NDArray[np.uint8] = np.clip(base[..., None] * tint, 0, 255).astype(np.uint8)
    return pixels


def _metal(rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    """Brushed metal: a bright grey with a radial highlight and fine streaks."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE - 0.5
    cx, cy = rng.uniform(-0.3, 0.3, 2)
    highlight = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / rng.uniform(0.05, 0.2))
    streaks = (
        rng.normal(0, 4, SIZE)[None, :] if rng.random() < 0.5 else rng.normal(0, 4, SIZE)[:, None]
    )
    level = rng.uniform(120, 185) + rng.uniform(20, 60) * highlight + streaks
    tint = np.array([1.0, 1.0, rng.uniform(0.97, 1.06)])
    pixels: npt.NDArray[np.uint8] = np.clip(level[..., None] * tint, 0, 255).astype(np.uint8)
    return pixels


def _part_mask(rng: np.random.Generator) -> Image.Image:
    """A washer (ring) or a plate with two holes, placed and sized at random."""
    mask = Image.new("L", (SIZE, SIZE), 0)
    pen = ImageDraw.Draw(mask)
    cx, cy = rng.uniform(52, 76, 2)
    if rng.random() < 0.5:
        r = rng.uniform(40, 54)
        hole = r * rng.uniform(0.2, 0.35)
        pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        pen.ellipse((cx - hole, cy - hole, cx + hole, cy + hole), fill=0)
    else:
        w, h = rng.uniform(38, 54), rng.uniform(28, 46)
        pen.rounded_rectangle(
            (cx - w, cy - h, cx + w, cy + h), radius=int(rng.uniform(3, 12)), fill=255
        )
        for side in (-1, 1):
            hx, r = cx + side * w * 0.65, rng.uniform(4, 7)
            pen.ellipse((hx - r, cy - r, hx + r, cy + r), fill=0)
    return mask.rotate(rng.uniform(0, 360), center=(cx, cy))


def _scratch(pen: ImageDraw.ImageDraw, rng: np.random.Generator) -> None:
    """A thin straight or slightly curved line, 25 to 60 px long."""
    x, y = rng.uniform(35, 93, 2)
    angle, length = rng.uniform(0, math.pi), rng.uniform(25, 60)
    bend = rng.uniform(-0.15, 0.15)
    points = []
    for t in np.linspace(-0.5, 0.5, 8):
        a = angle + bend * t * 4
        points.append((x + t * length * math.cos(a), y + t * length * math.sin(a)))
    pen.line(points, fill=int(rng.uniform(170, 255)), width=int(rng.integers(1, 3)))


def _spot(pen: ImageDraw.ImageDraw, rng: np.random.Generator) -> None:
    """One to three round stains (corrosion, a drop of residue)."""
    for _ in range(int(rng.integers(1, 4))):
        x, y = rng.uniform(35, 93, 2)
        rx, ry = rng.uniform(3, 8, 2)
        pen.ellipse((x - rx, y - ry, x + rx, y + ry), fill=int(rng.uniform(150, 230)))


def _crack(pen: ImageDraw.ImageDraw, rng: np.random.Generator) -> None:
    """A jagged dark line with a short branch."""
    x, y = rng.uniform(40, 88, 2)
    angle = rng.uniform(0, 2 * math.pi)
    points = [(x, y)]
    for _ in range(int(rng.integers(4, 8))):
        angle += rng.uniform(-0.9, 0.9)
        step = rng.uniform(5, 10)
        x, y = x + step * math.cos(angle), y + step * math.sin(angle)
        points.append((x, y))
    pen.line(points, fill=255, width=int(rng.integers(1, 3)))
    bx, by = points[len(points) // 2]
    branch = angle + rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.2)
    pen.line([(bx, by), (bx + 9 * math.cos(branch), by + 9 * math.sin(branch))], fill=255, width=1)


def _defect_colour(label: str, rng: np.random.Generator) -> tuple[int, int, int]:
    if label == "scratch":  # bright: bare metal catches the light
        v = int(rng.uniform(205, 250))
        return (v, v, v)
    if label == "spot":  # rust brown to dark grey
        return (int(rng.uniform(60, 120)), int(rng.uniform(35, 70)), int(rng.uniform(20, 50)))
    v = int(rng.uniform(10, 45))  # a crack is a dark gap
    return (v, v, v)


if __name__ == "__main__":
    main()
