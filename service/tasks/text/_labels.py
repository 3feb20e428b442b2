"""A text model's label file for ``loopserve label``: a ``text,label[,id][,prediction_id]`` CSV,
each row without an id given one derived from its text and label."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from service.domain.loop import NewSample
from service.errors import InvalidInput
from service.tasks._client import CANDIDATE_INFO_COLUMNS

CSV_COLUMNS = ("text", "label", "id", "prediction_id")
CSV_FORMAT = "text,label[,id][,prediction_id]"


def read_label_csv(path: Path, skip_unlabeled: bool = False) -> list[NewSample]:
    """Samples from a ``text,label[,id][,prediction_id]`` CSV with a header row.

    Columns that ``loopserve candidates`` adds for information are ignored. Rows with an empty
    label are skipped when ``skip_unlabeled``, else refused. Raises :class:`InvalidInput` naming
    the file and line of the first problem.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(_csv_rows(path, handle))
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not UTF-8 text: {exc.reason}") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    if not rows:
        raise InvalidInput(f"{path} is empty; expected a header row {CSV_FORMAT} and samples")
    (_, header), body = rows[0], rows[1:]
    columns = [name.strip().lower() for name in header]
    unknown = [name for name in columns if name not in CSV_COLUMNS + CANDIDATE_INFO_COLUMNS]
    missing = [name for name in ("text", "label") if name not in columns]
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    problems = []
    if missing:
        problems.append(f"no {' or '.join(map(repr, missing))} column")
    if unknown:
        problems.append(f"unknown column(s) {', '.join(map(repr, unknown))}")
    if repeated:
        problems.append(f"repeated column(s) {', '.join(map(repr, repeated))}")
    if problems:
        raise InvalidInput(
            f"{path}: line 1: {'; '.join(problems)}; the header must name the columns {CSV_FORMAT}"
        )
    samples = []
    for line, fields in body:
        if len(fields) != len(columns):
            raise InvalidInput(
                f"{path}: line {line}: {len(fields)} field(s) where the header has {len(columns)}"
            )
        row = dict(zip(columns, fields, strict=True))
        if skip_unlabeled and not row["label"].strip():
            continue
        for name in ("text", "label"):
            if not row[name].strip():
                raise InvalidInput(f"{path}: line {line}: empty {name}")
        samples.append(
            NewSample(
                text=row["text"],
                label=row["label"].strip(),
                id=row.get("id", "").strip() or content_id(row["text"], row["label"].strip()),
                prediction_id=row.get("prediction_id", "").strip(),
            )
        )
    if not samples:
        what = "no labeled rows" if skip_unlabeled and body else "a header but no samples"
        raise InvalidInput(f"{path} has {what}")
    return samples


def _csv_rows(path: Path, handle: TextIO) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank CSV record."""
    reader = csv.reader(handle, strict=True)
    try:
        for fields in reader:
            if fields and any(f.strip() for f in fields):
                yield reader.line_num, fields
    except csv.Error as exc:
        raise InvalidInput(f"{path}: line {reader.line_num}: {exc}") from None


def content_id(text: str, label: str) -> str:
    """The id of a CSV row without one: re-posting the same file is then idempotent."""
    return "csv-" + hashlib.sha256(f"{text}\x1f{label}".encode()).hexdigest()[:24]
