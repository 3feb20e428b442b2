"""A text model's client side: texts typed on the command line, ``text,label`` CSVs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from service.config import ModelDefinition
from service.tasks._client import (
    CandidateColumn,
    ClientHelp,
    ClientInputs,
    ClientItem,
    LabeledInputs,
    csv_header,
)
from service.tasks.text._definition import create_definition
from service.tasks.text._inputs import INPUT
from service.tasks.text._labels import CSV_FORMAT, read_label_csv
from service.types import Tensor


class TextClient:
    """Texts are sent in one request: a refusal names the text, and the caller retypes it."""

    help = ClientHelp(
        option="text",
        data="a text,label CSV",
        inputs="texts",
        arguments="texts",
        labels=f"columns {CSV_FORMAT}",
    )
    argument = "text"
    report_each = False
    per_request = 0
    noun = "samples"

    def request(self, items: Sequence[ClientItem]) -> Tensor:
        return Tensor(INPUT, "BYTES", (len(items),), [item.value for item in items])

    def predict_inputs(self, arguments: Sequence[str]) -> ClientInputs:
        return ClientInputs([ClientItem(text, text.encode()) for text in arguments], [])

    def recognises_file(self, path: Path) -> bool:
        return INPUT in csv_header(path)

    def read_labels(self, path: Path, skip_unlabeled: bool) -> LabeledInputs:
        # A bad file is refused whole, before anything is sent.
        samples = read_label_csv(path, skip_unlabeled=skip_unlabeled)
        return LabeledInputs([s.text for s in samples], samples, [], len(samples))

    def recognises_payloads(self, payloads: Sequence[str | bytes]) -> bool:
        return all(isinstance(payload, str) for payload in payloads)

    def write_candidates(self, out: Path, payloads: Sequence[str | bytes]) -> CandidateColumn:
        texts = [p if isinstance(p, str) else "" for p in payloads]
        return CandidateColumn(INPUT, texts, texts)

    def create_definition(self, models_dir: Path, name: str, data: Path) -> ModelDefinition:
        return create_definition(models_dir, name, data)

    def prepare_seed(self, definition: ModelDefinition) -> None:
        """A text model's seed CSV is part of its definition."""
