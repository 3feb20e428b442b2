"""Typed settings: model definitions (``models/<name>/model.toml``), the files they are made of,
and server settings. Built on dataclasses + tomllib; see the modules for each."""

from service.config._files import read_labeled_csv, write_model_toml
from service.config._models import (
    BUNDLED_BACKBONES,
    DEFAULT_BACKBONE,
    DRIFT_DETECTORS,
    EMBEDDING_METHODS,
    MODEL_NAME_PATTERN,
    REFERENCE_SOURCES,
    AdaptationRecipe,
    DriftRecipe,
    ModelDefinition,
    ServingOptions,
    TrainRecipe,
    bundled_backbone_path,
    load_model_definition,
    validate_model_name,
)
from service.config._settings import ROLES, ServerSettings
from service.config._tables import from_table
from service.domain.gate import GateThresholds

__all__ = [
    "BUNDLED_BACKBONES",
    "DEFAULT_BACKBONE",
    "DRIFT_DETECTORS",
    "EMBEDDING_METHODS",
    "MODEL_NAME_PATTERN",
    "REFERENCE_SOURCES",
    "ROLES",
    "AdaptationRecipe",
    "DriftRecipe",
    "GateThresholds",
    "ModelDefinition",
    "ServerSettings",
    "ServingOptions",
    "TrainRecipe",
    "bundled_backbone_path",
    "from_table",
    "load_model_definition",
    "read_labeled_csv",
    "validate_model_name",
    "write_model_toml",
]
