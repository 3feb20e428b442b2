"""``loopserve predict`` and ``loopserve label`` for an image model: files in, one line per file
out. A file that cannot be read or that the server refuses is reported with the reason and the
rest go on; the exit status is then 1."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from service.cli._image_files import LabeledImage
from service.cli._labels import LABEL_BATCH_BYTES, label_batches, size_batches
from service.domain.loop import AddOutcome, NewSample, content_key, derived_sample_id

if TYPE_CHECKING:
    from service.api.adaptation_client import AdaptationClient
    from service.api.client import Classification, InferenceClient

# Images per ModelInfer request: within every image model's max_images_per_request default (32)
# and small enough that a refused batch is cheap to resend one by one.
PREDICT_BATCH = 8
INVALID_ARGUMENT = "INVALID_ARGUMENT"

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class FileError:
    """A file that was not classified or stored, and why."""

    file: str
    error: str


@dataclass(frozen=True)
class LabelReport:
    accepted: int
    duplicates: int
    ids: list[str]
    errors: list[FileError]


def read_file(path: Path, errors: list[FileError]) -> bytes | None:
    """``path``'s bytes; None (and an entry in ``errors``) when it cannot be sent."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        errors.append(FileError(str(path), f"cannot read: {exc.strerror or exc}"))
        return None
    if not data:
        errors.append(FileError(str(path), "empty file"))
    elif len(data) > LABEL_BATCH_BYTES:
        limit = LABEL_BATCH_BYTES // (1024 * 1024)
        errors.append(FileError(str(path), f"{len(data)} bytes; at most {limit} MiB are sent"))
    else:
        return data
    return None


def predict_images(
    client: InferenceClient, model: str, files: Sequence[str]
) -> tuple[list[Classification], list[FileError]]:
    """Classify the image ``files`` in batches of PREDICT_BATCH (about 3 MB at most)."""
    errors: list[FileError] = []
    loaded = [(name, data) for name in files if (data := read_file(Path(name), errors))]
    results: list[Classification] = []
    for start, stop in size_batches([len(data) for _, data in loaded], PREDICT_BATCH):
        batch = loaded[start:stop]

        def classify(items: list[tuple[str, bytes]]) -> list[Classification]:
            return client.classify_images(model, [d for _, d in items], [n for n, _ in items])

        results.extend(_each_refused_alone(batch, classify, lambda item: item[0], errors))
    return results, errors


def label_images(
    client: AdaptationClient, model: str, images: Sequence[LabeledImage]
) -> LabelReport:
    """Post ``images`` as labeled samples (their bytes in ``NewSample.data``) in batches of at
    most LABEL_BATCH samples and about LABEL_BATCH_BYTES. Ids default to the server's own
    derivation from the content and label, so posting the same files again stores nothing twice."""
    errors: list[FileError] = []
    samples: list[tuple[str, NewSample]] = []
    for image in images:
        data = read_file(image.path, errors)
        if data is not None:
            sample_id = image.id or derived_sample_id(content_key(data), image.label)
            sample = NewSample("", image.label, sample_id, image.prediction_id, data=data)
            samples.append((str(image.path), sample))
    accepted = duplicates = 0
    ids: list[str] = []
    for start, stop in label_batches([s for _, s in samples]):

        def add(items: list[tuple[str, NewSample]]) -> list[AddOutcome]:
            return [client.add_samples(model, [s for _, s in items])]

        for outcome in _each_refused_alone(samples[start:stop], add, lambda i: i[0], errors):
            accepted += outcome.accepted
            duplicates += outcome.duplicates
            ids.extend(outcome.ids)
    return LabelReport(accepted, duplicates, ids, errors)


def _each_refused_alone(
    batch: list[T],
    send: Callable[[list[T]], list[R]],
    name: Callable[[T], str],
    errors: list[FileError],
) -> list[R]:
    """``send(batch)``; when the server refuses it as invalid, each item again on its own, so
    that each refused file is reported with the server's message and the others still go."""
    from service.api.client import ClientError

    try:
        return send(batch)
    except ClientError as exc:
        if exc.code != INVALID_ARGUMENT:
            raise
        if len(batch) == 1:
            errors.append(FileError(name(batch[0]), str(exc)))
            return []
    results: list[R] = []
    for item in batch:
        results.extend(_each_refused_alone([item], send, name, errors))
    return results
