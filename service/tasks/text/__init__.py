"""Text classification: UTF-8 texts in, tokenized server-side with the version's fast tokenizer."""

from __future__ import annotations

from pathlib import Path

from service.config import ServingOptions
from service.domain.versions import VersionMeta
from service.tasks._contract import RequestLimits
from service.tasks.text._encoder import TextEncoder
from service.tasks.text._inputs import INPUT, TextInputs

NAME = "text-classification"
TOKENIZER_FILE = "tokenizer.json"


class TextClassification:
    name = NAME

    def input_contract(self, serving: ServingOptions) -> TextInputs:
        return TextInputs(RequestLimits(serving.max_texts_per_request, serving.max_text_bytes))

    def preprocessor(self, version_dir: Path, meta: VersionMeta) -> TextEncoder:
        return TextEncoder(version_dir / TOKENIZER_FILE, meta.max_seq_length)


__all__ = ["INPUT", "NAME", "TextClassification", "TextEncoder", "TextInputs"]
