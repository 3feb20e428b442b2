"""Text classification: UTF-8 texts in, tokenized server-side with the version's fast tokenizer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from service.config import ModelDefinition, read_labeled_csv
from service.domain.loop import NewSample
from service.domain.versions import VersionMeta
from service.errors import ConfigError
from service.tasks._contract import RequestLimits
from service.tasks.text._client import TextClient
from service.tasks.text._definition import create_definition
from service.tasks.text._encoder import TextEncoder
from service.tasks.text._inputs import INPUT, TextInputs
from service.tasks.text._labels import CSV_FORMAT, content_id, read_label_csv

NAME = "text-classification"
TOKENIZER_FILE = "tokenizer.json"


class TextClassification:
    name = NAME
    training = "service.tasks.text.training"

    def input_contract(self, definition: ModelDefinition) -> TextInputs:
        if definition.inputs:
            # A text model's input options live in [model] and [serving] (they predate [input]).
            keys = ", ".join(sorted(definition.inputs))
            raise ConfigError(f"model {definition.name!r}: [input] {keys}: a {NAME} model has none")
        serving = definition.serving
        return TextInputs(RequestLimits(serving.max_texts_per_request, serving.max_text_bytes))

    def version_inputs(self, definition: ModelDefinition) -> dict[str, Any]:
        return {}

    def seed_samples(self, definition: ModelDefinition) -> Iterator[NewSample]:
        for text, label in read_labeled_csv(definition.seed_path):
            yield NewSample(text, label)

    def job_backbone(self, definition: ModelDefinition, meta: VersionMeta) -> str:
        """The encoder directory model.toml names; the version's weights are loaded onto it."""
        return str(definition.backbone_path())

    def preprocessor(self, version_dir: Path, meta: VersionMeta) -> TextEncoder:
        return TextEncoder(version_dir / TOKENIZER_FILE, meta.max_seq_length)

    def client(self) -> TextClient:
        return TextClient()


__all__ = [
    "CSV_FORMAT",
    "INPUT",
    "NAME",
    "TextClassification",
    "TextClient",
    "TextEncoder",
    "TextInputs",
    "content_id",
    "create_definition",
    "read_label_csv",
]
