"""The files a model definition is made of: labeled ``text,label`` CSVs and a default model.toml."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from service.config._models import DEFAULT_BACKBONE
from service.errors import ConfigError


def read_labeled_csv(path: Path, column: str = "text") -> list[tuple[str, str]]:
    """Rows of a ``text,label`` CSV (extra columns ignored), validated; ``column`` names the
    input's column (an image model's seed CSV: ``path``)."""
    if not path.is_file():
        raise ConfigError(f"no such data file: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {column, "label"} - set(reader.fieldnames or ())
        if missing:
            raise ConfigError(
                f"{path}: needs the columns {column},label (missing {', '.join(sorted(missing))})"
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            text, label = (row.get(column) or "").strip(), (row.get("label") or "").strip()
            if not text or not label:
                raise ConfigError(f"{path}:{line}: empty {column} or label")
            if any(ord(c) < 32 or ord(c) == 127 for c in label):
                raise ConfigError(f"{path}:{line}: label {label!r} contains control characters")
            rows.append((text, label))
    if not rows:
        raise ConfigError(f"{path}: no rows")
    return rows


def write_model_toml(
    directory: Path, labels: list[str], seed_data: str, description: str = ""
) -> Path:
    """Write a model.toml with the default backbone and recipe (used by ``loopserve init --data``)."""
    directory.mkdir(parents=True, exist_ok=True)
    label_list = ", ".join(_toml_string(label) for label in labels)
    text = (
        "# Written by `loopserve init --data`; every key below is optional except the labels.\n"
        "[model]\n"
        f"description = {_toml_string(description)}\n"
        f"backbone = {_toml_string(DEFAULT_BACKBONE)}\n"
        'pooling = "mean"\n'
        "max_seq_length = 128\n"
        f"seed_data = {_toml_string(seed_data)}\n"
        f"labels = [{label_list}]\n\n"
        "[train]\n"
        "finetune_layers = 2\n"
        "learning_rate = 2e-5\n"
        "epochs = 6\n\n"
        "[serving]\n"
        "max_batch_size = 16\n"
        "max_queue_delay_ms = 0.0\n"
        "max_queue_size = 256\n"
        "# int8 serves when its accuracy on held-out rows is at most int8_max_accuracy_drop below\n"
        "# fp32's; otherwise fp32 serves and the version's meta.json says why.\n"
        "int8 = true\n"
        "int8_max_accuracy_drop = 0.01\n"
    )
    path = directory / "model.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _toml_string(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes; labels never hold DEL (see below).
    return json.dumps(value, ensure_ascii=False)
