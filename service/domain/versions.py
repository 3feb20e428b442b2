"""What a version records about itself (``versions/<n>/meta.json``), as typed records.

Every record reads the files older versions wrote: a missing key takes its default, and keys
this version does not know are kept in :attr:`VersionMeta.extra` so that rewriting a file (see
``ModelRegistry.update_meta``) never drops what a newer server recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from service.domain import _records as records
from service.domain.int8 import Int8Check
from service.domain.loop import GateResult
from service.domain.provenance import TrainingData
from service.domain.review import ReviewEvidence

DEFAULT_SERVING_FILE = "model.onnx"


@dataclass(frozen=True)
class Calibration:
    """A version's fitted temperature (``meta.json``'s ``calibration``)."""

    temperature: float
    rows: int  # held-out rows the temperature was fitted on
    accuracy: float  # accuracy on those rows
    source: str = ""  # which rows: "validation" (version 1) or "holdout" (a fine-tune's gate)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(value: object) -> Calibration | None:
        """The recorded calibration, or None when absent or malformed (older versions)."""
        return records.lenient(value, Calibration)


@dataclass(frozen=True)
class DataCounts:
    """Rows a version was built from. Version 1 fills the seed fields, a fine-tune the gate's."""

    train: int = 0
    validation: int = 0
    seed_rows: int = 0
    label_name_examples: int = 0
    holdout: int = 0
    anchor: int = 0


@dataclass(frozen=True)
class TrainingRecord:
    """What training reported: scores of the head-only and fine-tuned stages and the history."""

    head_only: dict[str, float] = field(default_factory=dict)
    finetuned: dict[str, float] | None = None
    used_finetune: bool = False
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    head_epochs: int = 0
    finetune_epochs: int = 0
    refit_examples: int = 0


# What a model is without a ``task`` in its model.toml or meta.json (every older one).
DEFAULT_TASK = "text-classification"


@dataclass(frozen=True)
class VersionMeta:
    """One version's ``meta.json``."""

    labels: tuple[str, ...]
    max_seq_length: int
    task: str = DEFAULT_TASK  # the service.tasks name that decodes its inputs
    inputs: dict[str, Any] = field(default_factory=dict)  # the task's input options (its [input])
    model: str = ""
    version: int = 0
    parent: int | None = None
    created: str = ""  # ISO 8601, UTC
    pooling: str = "mean"
    backbone: str = ""
    trainable_layers: int = 0
    serving_file: str = DEFAULT_SERVING_FILE
    status: str = "promoted"  # "promoted" or "rejected" by the gate, or "pending" review
    reason: str = ""
    job: str = ""  # the fine-tune job that made it; empty for version 1
    samples_upto: int = 0  # the last sample seq it trained on
    trained_on: TrainingData | None = None  # the stored samples it trained and gated on
    data: DataCounts = field(default_factory=DataCounts)
    train: TrainingRecord = field(default_factory=TrainingRecord)
    gate: GateResult | None = None
    review: ReviewEvidence | None = None  # why a pending version waits, and what was measured
    int8: Int8Check | None = None
    calibration: Calibration | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    digest: str = ""  # "sha256:<hex>" of the version's files; empty before digests existed
    extra: dict[str, Any] = field(default_factory=dict)  # keys this server does not know

    @staticmethod
    def from_dict(raw: Mapping[str, Any]) -> VersionMeta:
        """Parse a meta.json of this or an older version (missing keys take their defaults)."""
        given = {k: v for k, v in raw.items() if k in _KNOWN and (v or k not in _EMPTY_IS_DEFAULT)}
        unknown = {k: v for k, v in raw.items() if k not in _KNOWN}
        return records.structure({**_OLDEST, **given, "extra": unknown}, VersionMeta)

    def to_dict(self) -> dict[str, Any]:
        # The unknown keys first: a known field always wins over a stale copy of itself.
        known = records.unstructure(self)
        return {**known.pop("extra"), **known}


_KNOWN = {f.name for f in dataclasses.fields(VersionMeta)} - {"extra"}
# What the oldest files lack although every version has it now.
_OLDEST: dict[str, Any] = {"labels": (), "max_seq_length": 128}
# Fields an older file may hold empty or null: they read as their defaults.
_EMPTY_IS_DEFAULT = ("task", "inputs", "serving_file", "job")


def _numbers(value: object) -> dict[str, float]:
    """The numeric entries of a score table (NaN is a score that could not be measured)."""
    if not isinstance(value, Mapping):
        return {}
    return {
        str(k): float(v)
        for k, v in value.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


# How the records in a meta.json (and a job's result.json) read: a malformed optional record is
# None, malformed counts are zeros, and records with a file format of their own keep it.
records.reads(dict[str, float], _numbers)  # score tables: metrics, a training stage's scores
records.optional(Calibration)
records.optional(GateResult)
records.optional(Int8Check, Int8Check.from_dict)
records.optional(ReviewEvidence, ReviewEvidence.from_dict)
records.optional(TrainingData, TrainingData.from_dict)
records.writes(TrainingData, TrainingData.to_dict)  # seq ranges as [first, last] pairs
records.defaults_when_malformed(DataCounts)
records.defaults_when_malformed(TrainingRecord)
