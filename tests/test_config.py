"""Model definitions, labeled CSVs and server settings (service.config)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
from conftest import TINY_LABELS, TINY_MODEL, tiny_rows, write_csv

from service.config import (
    DEFAULT_BACKBONE,
    ModelDefinition,
    ServerSettings,
    ServingOptions,
    TrainRecipe,
    bundled_backbone_path,
    load_model_definition,
    read_labeled_csv,
    validate_model_name,
    write_model_toml,
)
from service.errors import ConfigError

REPO_MODELS = Path(__file__).resolve().parents[1] / "models"
MINIMAL = '[model]\nlabels = ["a", "b"]\n'


def _write_definition(models_dir: Path, text: str, name: str = "m") -> Path:
    directory = models_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.toml").write_text(text, encoding="utf-8")
    return directory


def _with(section: str, line: str) -> str:
    """A valid definition plus one line in ``[section]``."""
    if section == "model":
        return f'[model]\nlabels = ["a", "b"]\n{line}\n'
    return f"{MINIMAL}[{section}]\n{line}\n"


# --- load_model_definition: accepted ------------------------------------------------------------


def test_tiny_definition_is_loaded(tiny_definition: ModelDefinition, tiny_backbone: Path) -> None:
    assert tiny_definition.name == TINY_MODEL
    assert tiny_definition.labels == tuple(TINY_LABELS)
    assert tiny_definition.max_seq_length == 32
    assert tiny_definition.pooling == "mean"
    assert tiny_definition.train.head_epochs == 60
    assert tiny_definition.train.learning_rate == pytest.approx(1e-3)
    assert tiny_definition.train.batch_size == 8
    assert tiny_definition.serving.max_batch_size == 8
    assert tiny_definition.directory.is_absolute()
    assert tiny_definition.backbone_path() == tiny_backbone.resolve()
    assert read_labeled_csv(tiny_definition.seed_path) == tiny_rows()


def test_repo_support_intents_definition_is_valid() -> None:
    definition = load_model_definition(REPO_MODELS, "support-intents")

    assert definition.name == "support-intents"
    assert len(definition.labels) == 10
    assert "refund_request" in definition.labels
    assert definition.backbone == DEFAULT_BACKBONE
    assert definition.serving.max_batch_size == 16
    assert definition.serving.providers == "auto"
    assert definition.train == TrainRecipe()  # the file spells out the defaults
    rows = read_labeled_csv(definition.seed_path)
    assert rows
    assert {label for _, label in rows} <= set(definition.labels)


def test_minimal_definition_gets_the_defaults(tmp_path: Path) -> None:
    _write_definition(tmp_path, MINIMAL)

    definition = load_model_definition(tmp_path, "m")

    assert definition.labels == ("a", "b")
    assert definition.backbone == DEFAULT_BACKBONE
    assert definition.seed_path == (tmp_path / "m" / "seed.csv").resolve()
    assert definition.train == TrainRecipe()
    assert definition.serving == ServingOptions()


def test_integer_accepted_where_a_float_is_expected(tmp_path: Path) -> None:
    _write_definition(tmp_path, _with("serving", "max_queue_delay_ms = 5"))

    delay = load_model_definition(tmp_path, "m").serving.max_queue_delay_ms

    assert delay == 5.0
    assert isinstance(delay, float)


def test_relative_backbone_is_resolved_against_the_model_directory(tmp_path: Path) -> None:
    _write_definition(tmp_path, _with("model", 'backbone = "../backbones/small"'))

    definition = load_model_definition(tmp_path, "m")

    assert definition.backbone_path() == (tmp_path / "backbones" / "small").resolve()


def test_write_model_toml_round_trips(tmp_path: Path) -> None:
    labels = ['say "hi"', "back\\slash", "ünïcode", "plain"]
    write_model_toml(tmp_path / "m", labels, "data.csv", description='a "quoted" model')

    definition = load_model_definition(tmp_path, "m")

    assert definition.labels == tuple(labels)
    assert definition.seed_data == "data.csv"
    assert definition.description == 'a "quoted" model'


def test_write_model_toml_round_trips_control_characters(tmp_path: Path) -> None:
    labels = ["two\nlines", "bell\x07"]
    write_model_toml(tmp_path / "m", labels, "seed.csv")

    assert load_model_definition(tmp_path, "m").labels == tuple(labels)


# --- load_model_definition: rejected ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (MINIMAL + "[bogus]\nx = 1\n", "bogus"),
        (_with("model", 'labelz = ["a"]'), "labelz"),
        (_with("model", 'name = "other"'), "name"),
        (_with("train", "epoch = 3"), "epoch"),
        (_with("serving", "max_batchsize = 4"), "max_batchsize"),
    ],
)
def test_unknown_key_is_rejected_by_name(tmp_path: Path, text: str, key: str) -> None:
    _write_definition(tmp_path, text)

    with pytest.raises(ConfigError, match=rf"model\.toml.*unknown key\(s\) {key}; known: "):
        load_model_definition(tmp_path, "m")


@pytest.mark.parametrize(
    ("section", "line", "message"),
    [
        ("serving", 'max_batch_size = "8"', r"\[serving\] max_batch_size: expected int, got str"),
        ("serving", "max_batch_size = true", r"max_batch_size: expected int, got bool"),
        ("serving", "max_batch_size = 8.0", r"max_batch_size: expected int, got float"),
        ("serving", "int8 = 1", r"int8: expected bool, got int"),
        ("serving", 'cache = "yes"', r"cache: expected bool, got str"),
        ("serving", "providers = 1", r"providers: expected str, got int"),
        ("train", 'seed = "0"', r"\[train\] seed: expected int, got str"),
        ("train", 'learning_rate = "fast"', r"learning_rate: expected float, got str"),
        ("model", "pooling = 1", r"\[model\] pooling: expected str, got int"),
        ("model", "max_seq_length = 64.5", r"max_seq_length: expected int, got float"),
    ],
)
def test_wrong_type_is_rejected(tmp_path: Path, section: str, line: str, message: str) -> None:
    _write_definition(tmp_path, _with(section, line))

    with pytest.raises(ConfigError, match=message):
        load_model_definition(tmp_path, "m")


def test_labels_with_a_non_string_are_rejected(tmp_path: Path) -> None:
    _write_definition(tmp_path, '[model]\nlabels = ["a", 1]\n')

    with pytest.raises(ConfigError, match=r"\[model\] labels: expected a list of str"):
        load_model_definition(tmp_path, "m")


def test_labels_given_as_a_string_are_rejected(tmp_path: Path) -> None:
    _write_definition(tmp_path, '[model]\nlabels = "abc"\n')

    with pytest.raises(ConfigError, match="labels: expected a list of str"):
        load_model_definition(tmp_path, "m")


def test_labels_given_as_a_number_are_rejected(tmp_path: Path) -> None:
    _write_definition(tmp_path, "[model]\nlabels = 5\n")

    with pytest.raises(ConfigError, match="labels: expected a list of str"):
        load_model_definition(tmp_path, "m")


@pytest.mark.parametrize(
    "text", ["model = 3\n", "serving = 5\n" + MINIMAL, "train = [1]\n" + MINIMAL]
)
def test_section_that_is_not_a_table_is_rejected(tmp_path: Path, text: str) -> None:
    _write_definition(tmp_path, text)

    with pytest.raises(ConfigError, match=r"model\.toml"):
        load_model_definition(tmp_path, "m")


@pytest.mark.parametrize(
    ("section", "line", "message"),
    [
        ("serving", "max_batch_size = 0", "max_batch_size must be >= 1"),
        ("serving", 'providers = "tpu"', "providers must be auto, cpu or cuda"),
        ("serving", "max_queue_size = 0", "max_queue_size must be >= 1"),
        ("serving", "max_queue_delay_ms = -1.0", "max_queue_delay_ms must be >= 0"),
        ("serving", "max_texts_per_request = 0", "max_texts_per_request must be >= 1"),
        ("serving", "max_text_bytes = 0", "max_text_bytes must be >= 1"),
        ("serving", "intra_op_threads = -1", "intra_op_threads must be >= 0"),
        ("serving", "thread_spin_us = -1", r"thread_spin_us must be in \[0, 10000\]"),
        ("serving", "thread_spin_us = 20000", r"thread_spin_us must be in \[0, 10000\]"),
        ("serving", "int8_max_accuracy_drop = 1.5", r"int8_max_accuracy_drop must be in \[0, 1\]"),
        ("serving", "cache_max_entries = 0", "cache_max_entries must be >= 1"),
        ("serving", "cache_max_bytes = 1024", "cache_max_bytes must be >= 65536"),
        ("train", "validation_fraction = 0.95", r"validation_fraction must be in \(0, 0.9\)"),
        ("train", "validation_fraction = 0", r"validation_fraction must be in \(0, 0.9\)"),
        ("train", "head_epochs = 0", "head_epochs must be >= 1"),
        ("train", "batch_size = 0", "batch_size must be >= 1"),
        ("train", "patience = 0", "patience must be >= 1"),
        ("train", "learning_rate = 0", "learning_rate must be > 0"),
        ("train", "layer_lr_decay = 1.5", r"layer_lr_decay must be in \(0, 1\]"),
        (
            "adaptation",
            "settle_seconds = 60",
            r"settle_seconds must be in \[0, max_settle_seconds\]",
        ),
        (
            "adaptation",
            "settle_seconds = -1",
            r"settle_seconds must be in \[0, max_settle_seconds\]",
        ),
        ("model", "max_seq_length = 4", r"max_seq_length must be in \[8, 512\]"),
        ("model", "max_seq_length = 1024", r"max_seq_length must be in \[8, 512\]"),
        ("model", 'pooling = "max"', "pooling must be mean or cls"),
    ],
)
def test_out_of_range_value_is_rejected(
    tmp_path: Path, section: str, line: str, message: str
) -> None:
    _write_definition(tmp_path, _with(section, line))

    with pytest.raises(ConfigError, match=rf"model\.toml \[{section}\]: {message}"):
        load_model_definition(tmp_path, "m")


def test_duplicate_labels_are_rejected(tmp_path: Path) -> None:
    _write_definition(tmp_path, '[model]\nlabels = ["a", "b", "a"]\n')

    with pytest.raises(ConfigError, match="labels must be unique"):
        load_model_definition(tmp_path, "m")


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    _write_definition(tmp_path, "[model\nlabels = 1\n")

    with pytest.raises(ConfigError, match=r"m/model\.toml: "):
        load_model_definition(tmp_path, "m")


# alibi-detect runs the online embedding detectors; Python 3.13 goes without it (pyproject.toml).
HAS_ALIBI_DETECT = importlib.util.find_spec("alibi_detect") is not None


@pytest.mark.parametrize("method", ["mmd", "lsdd"])
def test_an_online_detector_without_alibi_detect_is_refused_naming_the_alternatives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    monkeypatch.setitem(sys.modules, "alibi_detect", None)  # as where it is not installed
    _write_definition(tmp_path, _with("drift", f'embedding_method = "{method}"'))

    with pytest.raises(ConfigError) as raised:
        load_model_definition(tmp_path, "m")
    message = str(raised.value)
    assert (
        f'model.toml [drift]: embedding_method = "{method}" needs alibi-detect 0.11.4, which is '
        "not installed: it needs numpy < 2 and scipy < 1.12, and so runs on Python 3.11 and 3.12 "
        'only. Use embedding_method = "ks" (the default), or run loopserve on Python 3.12 or 3.11'
    ) in message


def test_without_alibi_detect_an_online_method_is_accepted_when_no_embedding_detector_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "alibi_detect", None)
    text = _with("drift", 'embedding_method = "mmd"\ndetectors = ["confidence", "labels"]')
    _write_definition(tmp_path, text)

    assert load_model_definition(tmp_path, "m").drift.embedding_method == "mmd"


@pytest.mark.skipif(not HAS_ALIBI_DETECT, reason="alibi-detect is not installed (Python 3.13)")
def test_an_online_detector_is_accepted_where_alibi_detect_is_installed(tmp_path: Path) -> None:
    _write_definition(tmp_path, _with("drift", 'embedding_method = "lsdd"'))

    assert load_model_definition(tmp_path, "m").drift.embedding_method == "lsdd"


@pytest.mark.parametrize(
    "name",
    [
        "", "Upper", "-leading-dash", ".hidden", "a/b", "../escape", "with space", "ünï", "x" * 64,
        "tiny\n", "tiny\r\n", "tiny\x00",
    ],
)  # fmt: skip
def test_invalid_model_names_are_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=r"invalid model name .*lowercase letters"):
        validate_model_name(name)
    with pytest.raises(ConfigError, match="invalid model name"):
        load_model_definition(tmp_path, name)


@pytest.mark.parametrize("name", ["a", "0", "support-intents", "x.y_z-1", "x" * 63])
def test_valid_model_names_are_accepted(name: str) -> None:
    validate_model_name(name)


def test_missing_model_toml_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no model definition at .*`loopserve init new-model "):
        load_model_definition(tmp_path, "new-model")


# --- read_labeled_csv ---------------------------------------------------------------------------


def test_read_labeled_csv_strips_and_ignores_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id,label,text\n1, greeting ,  hello there \n2,question,why?\n")

    assert read_labeled_csv(path) == [("hello there", "greeting"), ("why?", "question")]


@pytest.mark.parametrize(
    ("header", "missing"),
    [("sentence,intent", "label, text"), ("text,intent", "label"), ("body,label", "text")],
)
def test_read_labeled_csv_missing_columns(tmp_path: Path, header: str, missing: str) -> None:
    path = tmp_path / "data.csv"
    path.write_text(f"{header}\nhello,greeting\n")

    with pytest.raises(ConfigError, match=rf"needs the columns text,label \(missing {missing}\)"):
        read_labeled_csv(path)


@pytest.mark.parametrize("row", ["hello,", "hello,   ", ",greeting", "  ,greeting"])
def test_read_labeled_csv_empty_text_or_label_names_the_line(tmp_path: Path, row: str) -> None:
    path = tmp_path / "data.csv"
    path.write_text(f"text,label\nfine,ok\n{row}\n")

    with pytest.raises(ConfigError, match=r"data\.csv:3: empty text or label"):
        read_labeled_csv(path)


def test_read_labeled_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such data file: .*nope\.csv"):
        read_labeled_csv(tmp_path / "nope.csv")


def test_read_labeled_csv_header_only(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "data.csv", [])

    with pytest.raises(ConfigError, match=r"data\.csv: no rows"):
        read_labeled_csv(path)


# --- ServerSettings.from_env --------------------------------------------------------------------


def test_from_env_without_variables_gives_the_defaults() -> None:
    assert ServerSettings.from_env({}) == ServerSettings()


def test_env_vars_override_defaults() -> None:
    env = {
        "LOOPSERVE_MODELS": "tiny, support-intents ,",
        "LOOPSERVE_MODELS_DIR": "/srv/models",
        "LOOPSERVE_STATE_DIR": "/srv/state",
        "LOOPSERVE_HOST": "127.0.0.1",
        "LOOPSERVE_GRPC_PORT": "50051",
        "LOOPSERVE_METRICS_PORT": "0",
        "LOOPSERVE_DRAIN_SECONDS": "2.5",
        "LOOPSERVE_LOG_LEVEL": "DEBUG",
        "GRPC_PORT": "1",  # not ours
    }

    settings = ServerSettings.from_env(env)

    assert settings == ServerSettings(
        models=("tiny", "support-intents"),
        models_dir=Path("/srv/models"),
        state_dir=Path("/srv/state"),
        host="127.0.0.1",
        grpc_port=50051,
        metrics_port=0,
        drain_seconds=2.5,
        log_level="DEBUG",
    )


def test_explicit_overrides_beat_env_and_none_means_unset() -> None:
    env = {"LOOPSERVE_GRPC_PORT": "50051", "LOOPSERVE_HOST": "127.0.0.1"}

    settings = ServerSettings.from_env(env, grpc_port=6000, host=None, models=("tiny",))

    assert settings.grpc_port == 6000
    assert settings.host == "127.0.0.1"
    assert settings.models == ("tiny",)


def test_from_env_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("LOOPSERVE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("LOOPSERVE_METRICS_PORT", "9999")

    assert ServerSettings.from_env().metrics_port == 9999


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("LOOPSERVE_GRPC_PORT", "eighty"),
        ("LOOPSERVE_GRPC_PORT", "80.5"),
        ("LOOPSERVE_METRICS_PORT", ""),
        ("LOOPSERVE_DRAIN_SECONDS", "soon"),
    ],
)
def test_unparsable_env_value_is_a_config_error(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key}={value!r}: "):
        ServerSettings.from_env({key: value})


@pytest.mark.parametrize(
    ("env", "overrides", "message"),
    [
        ({"LOOPSERVE_GRPC_PORT": "65536"}, {}, "grpc_port"),
        ({"LOOPSERVE_GRPC_PORT": "-1"}, {}, "grpc_port"),
        ({"LOOPSERVE_METRICS_PORT": "70000"}, {}, "metrics_port"),
        ({}, {"grpc_port": 100_000}, "grpc_port"),
        ({"LOOPSERVE_GRPC_PORT": "8001"}, {"metrics_port": -5}, "metrics_port"),
    ],
)
def test_invalid_port_is_rejected(
    env: dict[str, str], overrides: dict[str, int], message: str
) -> None:
    with pytest.raises(ConfigError, match=rf"settings: {message} must be in \[0, 65535\]"):
        ServerSettings.from_env(env, **overrides)


@pytest.mark.parametrize("port", ["0", "65535"])
def test_port_bounds_are_accepted(port: str) -> None:
    settings = ServerSettings.from_env(
        {"LOOPSERVE_GRPC_PORT": port, "LOOPSERVE_METRICS_PORT": port}
    )

    assert settings.grpc_port == settings.metrics_port == int(port)


def test_other_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="drain_seconds must be >= 0"):
        ServerSettings.from_env({"LOOPSERVE_DRAIN_SECONDS": "-1"})
    with pytest.raises(ConfigError, match="at least one --model is needed"):
        ServerSettings.from_env({"LOOPSERVE_MODELS": " , "})
    with pytest.raises(ConfigError, match="invalid model name 'Bad'"):
        ServerSettings.from_env({"LOOPSERVE_MODELS": "tiny,Bad"})


# --- bundled backbone ---------------------------------------------------------------------------


def test_bundled_backbone_path_exists_with_config() -> None:
    path = bundled_backbone_path("all-MiniLM-L6-v2")

    assert path.is_dir()
    assert (path / "config.json").is_file()
    assert (path / "tokenizer.json").is_file()


def test_default_backbone_resolves_to_the_bundled_one(tmp_path: Path) -> None:
    _write_definition(tmp_path, MINIMAL)

    definition = load_model_definition(tmp_path, "m")

    assert definition.backbone_path() == bundled_backbone_path("all-MiniLM-L6-v2")


def test_unknown_bundled_backbone_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown bundled backbone 'gpt-9'; known: bundled:all-"):
        bundled_backbone_path("gpt-9")
    _write_definition(tmp_path, _with("model", 'backbone = "bundled:gpt-9"'))
    with pytest.raises(ConfigError, match="unknown bundled backbone 'gpt-9'"):
        load_model_definition(tmp_path, "m").backbone_path()


# --- ServerSettings: safe defaults, tokens, TLS ---------------------------------------------------

TOKEN_LINE = "ops:admin:ops-token-0123456789abcdef"


def test_defaults_bind_loopback_only() -> None:
    settings = ServerSettings()
    assert (settings.host, settings.metrics_host) == ("127.0.0.1", "127.0.0.1")
    assert not settings.insecure
    assert settings.token_store() is None and settings.metrics_auth() is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "loopserve.internal"])
def test_non_loopback_bind_without_tokens_is_refused(host: str) -> None:
    with pytest.raises(ConfigError) as info:
        ServerSettings.from_env({"LOOPSERVE_HOST": host})
    message = str(info.value)
    assert f"refusing to serve gRPC on {host} without tokens" in message
    assert "--tokens-file or LOOPSERVE_TOKENS" in message
    assert "--insecure (LOOPSERVE_INSECURE=1)" in message


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_bind_without_tokens_is_fine(host: str) -> None:
    assert ServerSettings.from_env({}, host=host).host == host


def test_insecure_allows_a_non_loopback_bind_without_tokens() -> None:
    assert ServerSettings.from_env({}, host="0.0.0.0", insecure=True).insecure
    assert ServerSettings.from_env(
        {"LOOPSERVE_HOST": "0.0.0.0", "LOOPSERVE_INSECURE": "1"}
    ).insecure


def test_tokens_allow_a_non_loopback_bind(tmp_path: Path) -> None:
    settings = ServerSettings.from_env(
        {"LOOPSERVE_HOST": "0.0.0.0", "LOOPSERVE_TOKENS": TOKEN_LINE}
    )
    store = settings.token_store()
    assert store is not None and store.names == ("ops",)
    path = tmp_path / "tokens"
    path.write_text(TOKEN_LINE + "\n")
    settings = ServerSettings.from_env({"LOOPSERVE_TOKENS_FILE": str(path)}, host="0.0.0.0")
    assert settings.tokens_file == path


def test_a_bad_tokens_file_fails_at_start(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("ops:admin\n")
    with pytest.raises(ConfigError, match=rf"{path}: line 1: expected name:scope"):
        ServerSettings.from_env({}, tokens_file=path)


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("true", True), ("yes", True), ("0", False), ("", False)]
)
def test_insecure_env_values(value: str, expected: bool) -> None:
    assert ServerSettings.from_env({"LOOPSERVE_INSECURE": value}).insecure is expected


def test_unparsable_insecure_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"LOOPSERVE_INSECURE='maybe': expected 1 or 0"):
        ServerSettings.from_env({"LOOPSERVE_INSECURE": "maybe"})


def test_security_env_vars_are_read() -> None:
    env = {
        "LOOPSERVE_METRICS_HOST": "0.0.0.0",
        "LOOPSERVE_TLS_CERT": "/tls/tls.crt",
        "LOOPSERVE_TLS_KEY": "/tls/tls.key",
        "LOOPSERVE_TLS_CLIENT_CA": "/tls/ca.crt",
        "LOOPSERVE_METRICS_TOKEN": "scrape-token",
        "LOOPSERVE_METRICS_BASIC_AUTH": "prometheus:secret",
        "LOOPSERVE_TOKENS": TOKEN_LINE,
    }
    settings = ServerSettings.from_env(env)
    assert settings.metrics_host == "0.0.0.0"
    assert (settings.tls_cert, settings.tls_key, settings.tls_client_ca) == (
        Path("/tls/tls.crt"), Path("/tls/tls.key"), Path("/tls/ca.crt"),
    )  # fmt: skip
    assert settings.metrics_auth() is not None
    for secret in ("scrape-token", "prometheus:secret", "ops-token-0123456789abcdef"):
        assert secret not in repr(settings)


def test_health_port_is_off_unless_set() -> None:
    assert ServerSettings.from_env({}).health_port is None
    assert ServerSettings.from_env({"LOOPSERVE_HEALTH_PORT": ""}).health_port is None
    assert ServerSettings.from_env({"LOOPSERVE_HEALTH_PORT": "8002"}).health_port == 8002
    with pytest.raises(ConfigError, match="health_port must be in"):
        ServerSettings.from_env({"LOOPSERVE_HEALTH_PORT": "70000"})


def test_empty_optional_path_env_means_unset() -> None:
    assert (
        ServerSettings.from_env({"LOOPSERVE_TLS_CERT": "", "LOOPSERVE_TLS_KEY": ""}).tls_cert
        is None
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tls_cert": Path("c.pem")}, "--tls-cert and --tls-key go together"),
        ({"tls_key": Path("k.pem")}, "--tls-cert and --tls-key go together"),
        ({"tls_client_ca": Path("ca.pem")}, r"--tls-client-ca \(mutual TLS\) needs"),
    ],
)
def test_tls_settings_are_validated(overrides: dict[str, Path], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerSettings.from_env({}, **overrides)


def test_exposure_warnings() -> None:
    assert ServerSettings().exposure_warnings(False, False) == []
    open_wide = ServerSettings(host="0.0.0.0", metrics_host="0.0.0.0", insecure=True)
    warnings = open_wide.exposure_warnings(False, False)
    assert any("accepts calls without authentication" in w for w in warnings)
    assert any("metrics on 0.0.0.0 need no credentials" in w for w in warnings)
    with_tokens = ServerSettings(host="0.0.0.0", tokens=TOKEN_LINE)
    assert any(
        "bearer tokens cross the network in plaintext" in w
        for w in with_tokens.exposure_warnings(True, False)
    )
    tls = ServerSettings(host="0.0.0.0", tokens=TOKEN_LINE, tls_cert=Path("c"), tls_key=Path("k"))
    assert tls.exposure_warnings(True, False) == []


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LOOPSERVE_ROLE": "serving"}, "--role serving shares state through PostgreSQL"),
        ({"LOOPSERVE_ROLE": "trainer"}, "--role trainer shares state through PostgreSQL"),
        ({"LOOPSERVE_ROLE": "leader"}, "role must be one of all, serving, trainer"),
        ({"LOOPSERVE_DATABASE_URL": "mysql://db/x"}, "must be a postgresql:// URL"),
        ({"LOOPSERVE_POLL_SECONDS": "0"}, r"poll_seconds must be in \(0, 60\]"),
    ],
)
def test_scale_out_settings_are_checked_at_start(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerSettings.from_env(environ)


def test_the_database_url_stays_out_of_repr_and_work_dir_defaults_to_the_state_dir() -> None:
    url = "postgresql://loopserve:s3cret@db/loopserve"
    settings = ServerSettings.from_env(
        {"LOOPSERVE_DATABASE_URL": url, "LOOPSERVE_ROLE": "serving", "LOOPSERVE_STATE_DIR": "/s"}
    )
    assert settings.role == "serving" and settings.database_url == url
    assert "s3cret" not in repr(settings)
    assert settings.local_dir == Path("/s")
    assert ServerSettings.from_env({"LOOPSERVE_WORK_DIR": "/w"}).local_dir == Path("/w")
