"""Labeled image files on disk: an image folder (``DIR/<label>/*.jpg``, the ImageFolder layout)
or a ``path,label`` CSV whose paths are relative to the CSV, as ``loopserve init --task image``
and ``loopserve label`` read them (the server's seed reading is ``_seed``'s)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from service.errors import InvalidInput
from service.tasks._client import csv_header

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
IMAGE_CSV_FORMAT = "path,label[,id][,prediction_id]"


@dataclass(frozen=True)
class LabeledImage:
    """One image file and its label, as listed by a folder or a CSV row."""

    path: Path
    label: str
    id: str = ""  # the caller's sample id, from a CSV's id column
    prediction_id: str = ""


def is_image_file(path: Path) -> bool:
    return (
        path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
    )


def is_image_csv(path: Path) -> bool:
    """Whether ``path`` is a CSV whose header names a ``path`` column (a text CSV names ``text``)."""
    return "path" in csv_header(path)


def read_labeled_images(source: Path, skip_unlabeled: bool = False) -> list[LabeledImage]:
    """The images a folder or a CSV lists, sorted by label then path for a folder, in row order
    for a CSV. Raises :class:`InvalidInput` when there is none or the listing is malformed; the
    files themselves are read later, one by one."""
    images = (
        read_image_folder(source) if source.is_dir() else read_image_csv(source, skip_unlabeled)
    )
    if not images:
        raise InvalidInput(
            f"{source} lists no images: expected {source}/<label>/*.jpg|png|webp or a CSV "
            f"{IMAGE_CSV_FORMAT}"
        )
    return images


def read_image_folder(directory: Path) -> list[LabeledImage]:
    """``directory/<label>/<image>``: each sub-directory's name is the label of its images
    (files with other suffixes and hidden entries are ignored)."""
    try:
        folders = sorted(
            p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
    except OSError as exc:
        raise InvalidInput(f"cannot read {directory}: {exc.strerror or exc}") from None
    return [
        LabeledImage(path, folder.name)
        for folder in folders
        for path in sorted(folder.iterdir())
        if is_image_file(path)
    ]


def read_image_csv(path: Path, skip_unlabeled: bool = False) -> list[LabeledImage]:
    """Rows of a ``path,label[,id][,prediction_id]`` CSV with a header; other columns (those
    ``loopserve candidates`` writes for information) are ignored, paths are relative to the CSV."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, strict=True)
            columns = [name.strip().lower() for name in reader.fieldnames or ()]
            missing = [name for name in ("path", "label") if name not in columns]
            if missing:
                raise InvalidInput(
                    f"{path}: line 1: no {' or '.join(map(repr, missing))} column; the header "
                    f"must name the columns {IMAGE_CSV_FORMAT}"
                )
            return _image_rows(path, reader, skip_unlabeled)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not UTF-8 text: {exc.reason}") from None
    except csv.Error as exc:
        raise InvalidInput(f"{path}: {exc}") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None


def _image_rows(
    path: Path, reader: csv.DictReader[str], skip_unlabeled: bool
) -> list[LabeledImage]:
    images = []
    for row in reader:
        fields = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if not any(fields.values()):
            continue
        if not fields["label"] and skip_unlabeled:
            continue
        for name in ("path", "label"):
            if not fields[name]:
                raise InvalidInput(f"{path}: line {reader.line_num}: empty {name}")
        images.append(
            LabeledImage(
                path.parent / fields["path"],
                fields["label"],
                fields.get("id", ""),
                fields.get("prediction_id", ""),
            )
        )
    return images
