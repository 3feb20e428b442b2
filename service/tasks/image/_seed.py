"""An image model's seed data (``[model] seed_data``, relative to the model directory): a folder
in the ImageFolder layout, ``<dir>/<label>/*.jpg|png|webp``, or a CSV of ``path,label`` whose
paths are relative to the CSV."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from service.config import read_labeled_csv
from service.domain.loop import NewSample
from service.errors import ConfigError, InvalidInput
from service.tasks.image._files import read_image_folder


def read_seed_images(source: Path) -> list[tuple[Path, str]]:
    """(file, label) of every seed image, a folder's sorted by label then name, a CSV's in row
    order; ConfigError when there is none or the listing is malformed."""
    if source.is_dir():
        images = _folder(source)
    elif source.is_file():
        images = _csv(source)
    else:
        raise ConfigError(f"no such seed data: {source}")
    if not images:
        raise ConfigError(
            f"{source} lists no images: expected {source}/<label>/*.jpg|png|webp or a CSV of "
            "path,label"
        )
    return images


def seed_samples(source: Path) -> Iterator[NewSample]:
    """The seed images as labeled samples of content (the files' bytes), read one at a time."""
    for path, label in read_seed_images(source):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"seed image {path}: {exc.strerror or exc}") from None
        yield NewSample("", label, data=data)


def _folder(directory: Path) -> list[tuple[Path, str]]:
    try:
        return [(image.path, image.label) for image in read_image_folder(directory)]
    except InvalidInput as exc:
        raise ConfigError(str(exc)) from None


def _csv(path: Path) -> list[tuple[Path, str]]:
    return [(path.parent / file, label) for file, label in read_labeled_csv(path, "path")]
