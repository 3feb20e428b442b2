"""An image model's client side: image files on the command line, labeled image folders and
``path,label`` CSVs, candidates written as files. Files are read one by one; one that cannot be
read is reported, and the others still go."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from service.config import ModelDefinition
from service.domain.loop import NewSample, content_key, derived_sample_id
from service.errors import InvalidInput
from service.tasks._client import (
    REQUEST_BYTES,
    CandidateColumn,
    ClientHelp,
    ClientInputs,
    ClientItem,
    FileError,
    LabeledInputs,
)
from service.tasks.image._candidates import write_image_candidates
from service.tasks.image._container import inspect
from service.tasks.image._definition import create_image_definition, ensure_seed_data
from service.tasks.image._files import IMAGE_CSV_FORMAT, is_image_csv, read_labeled_images
from service.tasks.image._inputs import INPUT
from service.types import Tensor

# Images per ModelInfer request: within every image model's max_images_per_request default (32)
# and small enough that a refused batch is cheap to resend one by one.
PREDICT_BATCH = 8
FOLDER = "a folder DIR/<label>/*.jpg|png|webp"


class ImageClient:
    help = ClientHelp(
        option="image",
        data=f"for --task image {FOLDER} or a path,label CSV (the images are copied to "
        "models/NAME/seed/)",
        inputs="image files for an image model",
        arguments="for an image model, JPEG/PNG/WebP files",
        labels=f"for an image model {FOLDER} or a CSV {IMAGE_CSV_FORMAT} (paths relative to the "
        "CSV)",
    )
    argument = "file"
    report_each = True
    per_request = PREDICT_BATCH
    noun = "images"

    def __init__(self, task: str) -> None:
        self._task = task

    def request(self, items: Sequence[ClientItem]) -> Tensor:
        return Tensor(INPUT, "BYTES", (len(items),), [item.value for item in items])

    def predict_inputs(self, arguments: Sequence[str]) -> ClientInputs:
        errors: list[FileError] = []
        items = [
            ClientItem(name, data) for name in arguments if (data := read_file(Path(name), errors))
        ]
        return ClientInputs(items, errors)

    def recognises_file(self, path: Path) -> bool:
        return path.is_dir() or is_image_csv(path)

    def read_labels(self, path: Path, skip_unlabeled: bool) -> LabeledInputs:
        """Ids default to the server's own derivation from the content and label."""
        # A bad listing is refused before anything is sent; a bad file is reported and skipped.
        images = read_labeled_images(path, skip_unlabeled=skip_unlabeled)
        errors: list[FileError] = []
        names, samples = [], []
        for image in images:
            data = read_file(image.path, errors)
            if data is not None:
                sample_id = image.id or derived_sample_id(content_key(data), image.label)
                names.append(str(image.path))
                samples.append(
                    NewSample("", image.label, sample_id, image.prediction_id, data=data)
                )
        return LabeledInputs(names, samples, errors, len(images))

    def recognises_payloads(self, payloads: Sequence[str | bytes]) -> bool:
        return any(isinstance(p, bytes) and _is_image(p) for p in payloads)

    def write_candidates(self, out: Path, payloads: Sequence[str | bytes]) -> CandidateColumn:
        return write_image_candidates(out, payloads)

    def create_definition(self, models_dir: Path, name: str, data: Path) -> ModelDefinition:
        return create_image_definition(models_dir, name, data, self._task)

    def prepare_seed(self, definition: ModelDefinition) -> None:
        ensure_seed_data(definition)


def read_file(path: Path, errors: list[FileError]) -> bytes | None:
    """``path``'s bytes; None (and an entry in ``errors``) when it cannot be sent."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        errors.append(FileError(str(path), f"cannot read: {exc.strerror or exc}"))
        return None
    if not data:
        errors.append(FileError(str(path), "empty file"))
    elif len(data) > REQUEST_BYTES:
        limit = REQUEST_BYTES // (1024 * 1024)
        errors.append(FileError(str(path), f"{len(data)} bytes; at most {limit} MiB are sent"))
    else:
        return data
    return None


def _is_image(data: bytes) -> bool:
    try:
        inspect(data)
    except InvalidInput:
        return False
    return True
