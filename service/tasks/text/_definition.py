"""``loopserve init NAME --data CSV`` of a text model: its definition written from a text,label
CSV, which becomes its seed data."""

from __future__ import annotations

import shutil
from pathlib import Path

from service.config import (
    ModelDefinition,
    load_model_definition,
    read_labeled_csv,
    validate_model_name,
    write_model_toml,
)
from service.errors import ConfigError


def create_definition(models_dir: Path, name: str, data: Path) -> ModelDefinition:
    """Write ``models_dir/name/`` (model.toml + seed.csv) from a text,label CSV."""
    validate_model_name(name)
    directory = models_dir / name
    if (directory / "model.toml").exists():
        raise ConfigError(
            f"{directory / 'model.toml'} already exists; drop --data to build from it"
        )
    rows = read_labeled_csv(data)
    labels = sorted({label for _, label in rows})
    if len(labels) < 2:
        raise ConfigError(f"{data}: needs at least two labels, found {labels}")
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data, directory / "seed.csv")
    write_model_toml(directory, labels, "seed.csv")
    return load_model_definition(models_dir, name)
