"""The task contract's client side: what the ``loopserve`` command does with a task's inputs.

Command-line arguments become a ModelInfer input, a label file becomes labeled samples, labeling
candidates become a file a person fills in, seed data becomes a model definition. Each task
answers with neutral data (``service.types.Tensor``, ``NewSample``): the conversion to the wire is
``service.api``'s, and argument parsing and output are the command's. Nothing here needs a
model's definition: a client knows only what the server tells it, the model's task.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from service.config import ModelDefinition
from service.domain.loop import NewSample
from service.types import Tensor

# About what one request of the command carries at most: the server's transport refuses
# messages over 4 MiB, and an input heavier than this is not sent at all.
REQUEST_BYTES = 3 * 1024 * 1024
# Written by `loopserve candidates` for the labeler's information; label files may carry them.
CANDIDATE_INFO_COLUMNS = ("predicted_label", "confidence", "atypicality", "score", "version")


@dataclass(frozen=True)
class FileError:
    """An input (a file) that was not classified or stored, and why."""

    file: str
    error: str


@dataclass(frozen=True)
class ClientItem:
    """One input ready to send: how the output names it, and its bytes in a request."""

    name: str
    value: bytes


@dataclass(frozen=True)
class ClientInputs:
    """``loopserve predict``'s arguments, read: the items to send and the arguments that
    cannot be sent."""

    items: list[ClientItem]
    errors: list[FileError]


@dataclass(frozen=True)
class LabeledInputs:
    """A label file, read: its samples (each named for a refusal), the entries that cannot be
    sent, and how many entries it listed."""

    names: list[str]
    samples: list[NewSample]
    errors: list[FileError]
    listed: int


@dataclass(frozen=True)
class CandidateColumn:
    """The input column of a candidates file: its header, each candidate's cell, each one's
    value in the JSON output, and a note on files written beside the CSV ("" for none)."""

    name: str
    cells: list[str]
    values: list[str]
    note: str = ""


@dataclass(frozen=True)
class ClientHelp:
    """How the command's help describes the task; ``option`` is its ``init --task`` value."""

    option: str
    data: str  # what ``init --data`` holds
    inputs: str  # what ``predict`` classifies
    arguments: str  # what each ``predict`` argument is
    labels: str  # what ``label FILE`` reads


class ClientSide(Protocol):
    """One task's client side (see the module docstring)."""

    @property
    def help(self) -> ClientHelp: ...

    @property
    def argument(self) -> str:
        """The key that names an argument in ``predict --json`` output ("text", "file")."""
        ...

    @property
    def report_each(self) -> bool:
        """Inputs are files reported one by one: one that cannot be read or that the server
        refuses is reported and the rest go on (a refused request is sent again item by item).
        Otherwise a refusal fails the command."""
        ...

    @property
    def per_request(self) -> int:
        """Items per ModelInfer request where ``report_each``; 0: every argument in one."""
        ...

    @property
    def noun(self) -> str:
        """What a label file lists, plural ("samples", "images")."""
        ...

    def request(self, items: Sequence[ClientItem]) -> Tensor:
        """The ModelInfer input tensor of ``items``."""
        ...

    def predict_inputs(self, arguments: Sequence[str]) -> ClientInputs:
        """``loopserve predict``'s arguments as items; InvalidInput when they cannot be sent."""
        ...

    def recognises_file(self, path: Path) -> bool:
        """Whether ``path`` is a label file of this task (by its layout, not its content)."""
        ...

    def read_labels(self, path: Path, skip_unlabeled: bool) -> LabeledInputs:
        """A label file as samples, each with an id (posting the file again stores nothing
        twice); InvalidInput naming the file and line when it is malformed."""
        ...

    def recognises_payloads(self, payloads: Sequence[str | bytes]) -> bool:
        """Whether labeling candidates' payloads (texts, or the bytes of binary inputs) are
        inputs of this task."""
        ...

    def write_candidates(self, out: Path, payloads: Sequence[str | bytes]) -> CandidateColumn:
        """The input column of the candidates file ``out`` (written by the caller), writing
        whatever files its cells name; OSError when they cannot be written."""
        ...

    def create_definition(self, models_dir: Path, name: str, data: Path) -> ModelDefinition:
        """``loopserve init NAME --data DATA``: write ``models_dir/NAME`` from labeled data;
        ConfigError when the data cannot make a model."""
        ...

    def prepare_seed(self, definition: ModelDefinition) -> None:
        """Before a model's first build: make seed data the repository does not keep."""
        ...


def csv_header(path: Path) -> list[str]:
    """The column names of the CSV ``path``, lower-case; [] when it is not a readable CSV."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    return [name.strip().lower() for name in header]
