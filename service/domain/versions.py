"""What a version records about itself (``versions/<n>/meta.json``), as typed records.

Every record reads the files older versions wrote: a missing key takes its default, and keys
this version does not know are kept in :attr:`VersionMeta.extra` so that rewriting a file (see
``ModelRegistry.update_meta``) never drops what a newer server recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from service.domain.int8 import Int8Check
from service.domain.loop import GateResult
from service.domain.provenance import TrainingData
from service.domain.review import ReviewEvidence

DEFAULT_SERVING_FILE = "model.onnx"
T = TypeVar("T")


@dataclass(frozen=True)
class Calibration:
    """A version's fitted temperature (``meta.json``'s ``calibration``)."""

    temperature: float
    rows: int  # held-out rows the temperature was fitted on
    accuracy: float  # accuracy on those rows
    source: str  # which rows: "validation" (version 1) or "holdout" (a fine-tune's gate)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(value: object) -> Calibration | None:
        """The recorded calibration, or None when absent or malformed (older versions)."""
        if not isinstance(value, Mapping):
            return None
        try:
            return Calibration(
                temperature=float(value["temperature"]),
                rows=int(value["rows"]),
                accuracy=float(value["accuracy"]),
                source=str(value.get("source", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class DataCounts:
    """Rows a version was built from. Version 1 fills the seed fields, a fine-tune the gate's."""

    train: int = 0
    validation: int = 0
    seed_rows: int = 0
    label_name_examples: int = 0
    holdout: int = 0
    anchor: int = 0

    @staticmethod
    def from_dict(value: object) -> DataCounts:
        return _known(DataCounts, value)


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

    @staticmethod
    def from_dict(value: object) -> TrainingRecord:
        return _known(TrainingRecord, value)


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
        known = {f.name for f in dataclasses.fields(VersionMeta)} - {"extra"}
        parent = raw.get("parent")
        return VersionMeta(
            labels=tuple(str(label) for label in raw.get("labels", ())),
            max_seq_length=int(raw.get("max_seq_length", 128)),
            task=str(raw.get("task") or DEFAULT_TASK),
            inputs=dict(raw.get("inputs") or {}),
            model=str(raw.get("model", "")),
            version=int(raw.get("version", 0)),
            parent=None if parent is None else int(parent),
            created=str(raw.get("created", "")),
            pooling=str(raw.get("pooling", "mean")),
            backbone=str(raw.get("backbone", "")),
            trainable_layers=int(raw.get("trainable_layers", 0)),
            serving_file=str(raw.get("serving_file") or DEFAULT_SERVING_FILE),
            status=str(raw.get("status", "promoted")),
            reason=str(raw.get("reason", "")),
            job=str(raw.get("job") or ""),
            samples_upto=int(raw.get("samples_upto", 0)),
            trained_on=TrainingData.from_dict(raw.get("trained_on")),
            data=DataCounts.from_dict(raw.get("data")),
            train=TrainingRecord.from_dict(raw.get("train")),
            gate=_gate(raw.get("gate")),
            review=ReviewEvidence.from_dict(raw.get("review")),
            int8=Int8Check.from_dict(raw.get("int8")),
            calibration=Calibration.from_dict(raw.get("calibration")),
            metrics=_numbers(raw.get("metrics")),
            digest=str(raw.get("digest", "")),
            extra={k: v for k, v in raw.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        # The unknown keys first: a known field always wins over a stale copy of itself.
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del fields["extra"]
        out: dict[str, Any] = {**self.extra}
        for name, value in fields.items():
            out[name] = _plain(value)
        return out


def _gate(value: object) -> GateResult | None:
    if not isinstance(value, Mapping):
        return None
    try:
        return _known(GateResult, value)
    except TypeError:  # a required score is missing
        return None


def _numbers(value: object) -> dict[str, float]:
    """The numeric entries of a metrics table (NaN is a score that could not be measured)."""
    if not isinstance(value, Mapping):
        return {}
    return {
        str(k): float(v)
        for k, v in value.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _known(cls: type[T], value: object) -> T:
    """``cls`` from the keys of ``value`` it knows; others (from a newer writer) are ignored."""
    if not isinstance(value, Mapping):
        value = {}
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in value.items() if k in names})


def _plain(value: Any) -> Any:
    """JSON-ready: records as dicts, tuples as lists."""
    if isinstance(value, TrainingData):
        return value.to_dict()  # seq ranges as [first, last] pairs
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return list(value) if isinstance(value, tuple) else value
