"""Shared fixtures: a tiny random BERT backbone, a model definition on it, a built version.

Everything is built in temporary directories once per test session; tests that change state
copy the built state dir first (``state_dir`` fixture).
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg import database_url, postgres_server  # noqa: F401

from service.config import ModelDefinition, load_model_definition
from service.metrics import Metrics
from service.registry import ModelRegistry, VersionInfo

# Servers that tests start, in this process or as `loopserve serve`, never take the console's
# fixed default port: tests run side by side.
os.environ.setdefault("LOOPSERVE_CONSOLE_PORT", "0")

TINY_MODEL = "tiny"
TINY_LABELS = ["greeting", "complaint", "question"]
KEYWORDS = {
    "greeting": ["hello", "hi", "morning", "welcome", "hey"],
    "complaint": ["broken", "angry", "terrible", "awful", "late"],
    "question": ["how", "what", "when", "why", "where"],
}
# In the vocabulary but never in the seed data: material for distribution shifts in tests.
UNSEEN = ["parcel", "invoice", "refund", "bye", "voucher", "courier"]
FILLER = [
    "the",
    "a",
    "my",
    "your",
    "order",
    "today",
    "is",
    "it",
    "this",
    "please",
    "thanks",
    "team",
]


def tiny_rows(per_label: int = 20, seed: int = 0) -> list[tuple[str, str]]:
    """A learnable task: each label has its own keywords mixed into shared filler words."""
    rng = random.Random(seed)
    rows = []
    for label, words in KEYWORDS.items():
        for _ in range(per_label):
            tokens = rng.sample(FILLER, 3) + rng.sample(words, 2)
            rng.shuffle(tokens)
            rows.append((" ".join(tokens), label))
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def build_tiny_backbone(directory: Path) -> Path:
    """A 2-layer, 32-wide random BERT with a word-level tokenizer, in Hugging Face format."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel

    words = sorted({w for group in KEYWORDS.values() for w in group} | set(FILLER) | set(UNSEEN))
    vocab_words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words]
    vocab = {w: i for i, w in enumerate(vocab_words)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(str(directory))
    return directory


def write_tiny_definition(
    models_dir: Path,
    backbone: Path,
    name: str = TINY_MODEL,
    extra_toml: str = "",
    drift: str = "detectors = []",
    **serving: object,
) -> Path:
    """The tiny model's definition; ``serving`` keys go to [serving], ``drift`` is the [drift]
    table (monitoring off unless a test turns it on), ``extra_toml`` is appended."""
    directory = models_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    write_csv(directory / "seed.csv", tiny_rows())
    serving_lines = "".join(f"{k} = {_toml_value(v)}\n" for k, v in serving.items())
    (directory / "model.toml").write_text(
        "[model]\n"
        f'backbone = "{backbone}"\n'
        "max_seq_length = 32\n"
        f"labels = {TINY_LABELS!r}\n"
        "[train]\n"
        "head_epochs = 60\nhead_learning_rate = 0.05\nfinetune_layers = 1\nepochs = 2\n"
        "learning_rate = 1e-3\nbatch_size = 8\n"
        "[serving]\n"
        "max_batch_size = 8\n" + serving_lines + "[drift]\n" + drift + "\n" + extra_toml
    )
    return directory


def _toml_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else repr(value)


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_backbone(tmp_path_factory.mktemp("backbone"))


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory, tiny_backbone: Path) -> Path:
    directory = tmp_path_factory.mktemp("models")
    write_tiny_definition(directory, tiny_backbone)
    return directory


@pytest.fixture(scope="session")
def tiny_definition(models_dir: Path) -> ModelDefinition:
    return load_model_definition(models_dir, TINY_MODEL)


@pytest.fixture(scope="session")
def built_state(tmp_path_factory: pytest.TempPathFactory, tiny_definition: ModelDefinition) -> Path:
    """A state dir with version 1 and version 2 of the tiny model built (current = 1)."""
    from service.training import build_first_version

    state = tmp_path_factory.mktemp("state")
    registry = ModelRegistry(state, TINY_MODEL)
    build_first_version(tiny_definition, registry, progress=lambda _: None)
    build_first_version(tiny_definition, registry, progress=lambda _: None)
    return state


@pytest.fixture
def state_dir(built_state: Path, tmp_path: Path) -> Path:
    """A private copy of the built state dir, safe to change."""
    target = tmp_path / "state"
    shutil.copytree(built_state, target)
    return target


@pytest.fixture
def registry(state_dir: Path) -> ModelRegistry:
    return ModelRegistry(state_dir, TINY_MODEL)


@pytest.fixture
def version_one(registry: ModelRegistry) -> VersionInfo:
    return registry.get(1)


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    yield Metrics()


class RunningApp:
    """An App on ephemeral ports, its event loop in a background thread; tests call it over gRPC."""

    def __init__(self, settings: object, metrics: Metrics, drift_in_process: bool = True) -> None:
        import asyncio
        import dataclasses
        import threading

        from service.app import App
        from service.config import ServerSettings

        if isinstance(settings, ServerSettings) and settings.console_port == 8080:
            settings = dataclasses.replace(settings, console_port=0)  # see the top of this file
        self.app = App(settings, metrics, drift_in_process=drift_in_process)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._run(self.app.start())
        self.address = f"127.0.0.1:{self.app.grpc_port}"

    def _run(self, coro: object) -> object:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def stop(self) -> None:
        if not self.loop.is_running():
            return
        self._run(self.app.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def start_app(models_dir: Path, state_dir: Path, metrics: Metrics) -> Iterator[object]:
    """Factory: ``start_app(**settings)`` starts a server on the tiny model; stopped at teardown."""
    from service.config import ServerSettings

    started: list[RunningApp] = []

    def start(**overrides: object) -> RunningApp:
        values: dict[str, object] = {
            "models": (TINY_MODEL,),
            "models_dir": models_dir,
            "state_dir": state_dir,
            "host": "127.0.0.1",
            "grpc_port": 0,
            "metrics_port": 0,
            "drain_seconds": 5.0,
        }
        drift_in_process = bool(overrides.pop("drift_in_process", True))
        values.update(overrides)
        app = RunningApp(ServerSettings(**values), metrics, drift_in_process)
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()


@pytest.fixture
def server(start_app: object) -> RunningApp:
    return start_app()


# ---- security: tokens, TLS certificates, servers with auth ------------------------------------


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """PEM files made by the openssl CLI: a server CA and a server certificate for localhost and
    127.0.0.1; a client CA with a client certificate; another CA with a client certificate."""
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (Debian package openssl)")
    directory = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    def key_and_csr(name: str, subject: str) -> None:
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)  # fmt: skip

    def ca(name: str) -> None:
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip

    def sign(name: str, by: str, extensions: str) -> None:
        (directory / f"{name}.ext").write_text(extensions)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{by}.pem", "-CAkey", f"{by}.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")  # fmt: skip

    for name in ("server-ca", "client-ca", "other-ca"):
        ca(name)
    key_and_csr("server", "/CN=localhost")
    sign("server", "server-ca", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
         "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")  # fmt: skip
    for name, by in (("client", "client-ca"), ("stranger", "other-ca")):
        key_and_csr(name, f"/CN={name}")
        sign(name, by, "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    names = ["server-ca", "client-ca", "other-ca", "server", "client", "stranger"]
    files = {f"{n}.pem": directory / f"{n}.pem" for n in names}
    files.update({f"{n}.key": directory / f"{n}.key" for n in ("server", "client", "stranger")})
    return files


@pytest.fixture
def start_fake_server() -> Iterator[object]:
    """Factory: ``start_fake_server(core, tokens=None, tls=None)`` starts the api server on a
    fake adaptation core with a token store and TLS (``service.api.server.ServerTls``)."""
    from fake_adaptation import FakeServer

    from service.api import build_server
    from service.inference import InferenceService

    class SecureFakeServer(FakeServer):
        def __init__(self, core: object, tokens: object, tls: object) -> None:
            self._tokens, self._tls = tokens, tls
            super().__init__(core)

        async def _start(self, with_adaptation: bool) -> object:
            server = build_server(
                InferenceService({}), self.metrics, "127.0.0.1", 0, adaptation=self.core,
                tokens=self._tokens, tls=self._tls,
            )  # fmt: skip
            await server.server.start()
            await server.set_serving(True)
            return server

    started: list[FakeServer] = []

    def start(core: object, tokens: object = None, tls: object = None) -> FakeServer:
        server = SecureFakeServer(core, tokens, tls)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# --- the closed loop's test data (adaptation and scale-out tests) ---------------------------

# A shift the seed data never showed: the label hangs on one filler word.
MARKERS = {"parcel": "question", "invoice": "complaint", "voucher": "greeting"}
PLAIN = FILLER
ADAPTATION = """
[adaptation]
min_new_samples = {min_new}
max_retries = 0
backoff_seconds = 0
settle_seconds = {settle}
learning_rate = {lr}
layer_lr_decay = 1.0
head_learning_rate = {head_lr}
epochs = 10
patience = 4
batch_size = 8
anchor_size = 20
allow_new_labels = {allow_new}
[gate]
new_data_tolerance = 0.0
max_forgetting = 0.15
"""


def shifted(count: int, seed: int, markers: dict[str, str] = MARKERS) -> list[tuple[str, str]]:
    """``count`` distinct texts, the label given by the marker word each one contains."""
    rng = random.Random(seed)
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    while len(rows) < count:
        marker = list(markers)[len(rows) % len(markers)]
        words = [marker, *rng.sample(PLAIN, 3)]
        rng.shuffle(words)
        text = " ".join(words)
        if text not in seen:
            seen.add(text)
            rows.append((text, markers[marker]))
    return rows
