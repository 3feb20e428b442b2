"""A real ``loopserve serve`` process with its web console, for the browser tests.

It serves the tiny text model (versions 1 and 2 built, 1 serving, drift monitoring on so that
served inputs become labeling candidates, no fine-tune starting by itself) and the tiny image
model, with tokens of three scopes, on ports the OS picks. It is ready once gRPC health says
SERVING and the console answers.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
from cluster.replicas import Member
from conftest import TINY_MODEL, write_tiny_definition
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tasks.image.tiny_image_model import publish_version, write_definition
from waiting import wait_until

from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.api.adaptation_client import AdaptationClient
from service.api.channel import ChannelOptions
from service.drift import Candidate
from service.store import SQLiteStore

IMAGE_MODEL = "colours"
IMAGE_SIZE = 32
# Served inputs are kept as labeling candidates. Jobs start only when a test asks for one, and
# then run long enough to be cancelled (tiny data trains in a second otherwise).
DRIFT = 'detectors = ["confidence"]\nwindow_size = 10\ntest_window_size = 20\nreference_size = 60\n'
ADAPTATION = (
    "[adaptation]\nmin_new_samples = 1000\ndrift_min_samples = 1000\nepochs = 500\npatience = 500\n"
)
CONSOLE_LINE = re.compile(r"console at (http://127\.0\.0\.1:\d+)/")


@dataclass(frozen=True)
class Tokens:
    """Token names are what the store records as a label's source."""

    admin: str  # ops: every scope
    labeler: str  # labeler: label
    viewer: str  # viewer: infer only

    @classmethod
    def fresh(cls) -> Tokens:
        return cls(*(secrets.token_hex(16) for _ in range(3)))

    def file_text(self) -> str:
        return f"ops:admin:{self.admin}\nlabeler:label:{self.labeler}\nviewer:infer:{self.viewer}\n"


@dataclass
class ConsoleProcess:
    member: Member
    url: str  # the console's origin, no trailing slash
    state_dir: Path
    tokens: Tokens

    @property
    def address(self) -> str:
        return self.member.address

    def client(self, token: str | None = None) -> AdaptationClient:
        return AdaptationClient(
            self.address, options=ChannelOptions(token=token or self.tokens.admin)
        )

    def serving_version(self, model: str = TINY_MODEL) -> int:
        with self.client() as client:
            return client.model_status(model).serving_version

    def source_counts(self, model: str = TINY_MODEL) -> dict[str, int]:
        with self.client() as client:
            return {s.source: s.samples for s in client.sample_sources(model)}

    def candidates(self, model: str) -> list[Candidate]:
        """What the console's queue and bulk accept read (up to 1000)."""
        with self.client(self.tokens.labeler) as client:
            return client.labeling_candidates(model, 1000)

    def infer(self, model: str, inputs: dict[str, bytes], tensor: str) -> None:
        """One ModelInfer per input, the request id being the key (the prediction id), sent
        with the infer-only token; returns once every one is a labeling candidate."""
        metadata = (("authorization", f"Bearer {self.tokens.viewer}"),)
        with grpc.insecure_channel(self.address) as channel:
            stub = GRPCInferenceServiceStub(channel)
            for request_id, data in inputs.items():
                request = pb.ModelInferRequest(model_name=model, id=request_id)
                request.inputs.add(name=tensor, datatype="BYTES", shape=[1])
                request.inputs[0].contents.bytes_contents.append(data)
                stub.ModelInfer(request, timeout=30, metadata=metadata)
        # The drift monitor's worker takes them into the candidate pool shortly after.
        wait_until(
            lambda: set(inputs) <= {c.prediction_id for c in self.candidates(model)},
            30, f"{len(inputs)} inputs of {model} to become labeling candidates",
        )  # fmt: skip

    def infer_texts(self, texts: dict[str, str]) -> None:
        self.infer(TINY_MODEL, {k: v.encode() for k, v in texts.items()}, "text")

    def stored_labels(self, source: str, model: str = TINY_MODEL) -> dict[str, str]:
        """prediction id -> label of every stored sample ``source`` posted (read from the
        server's SQLite file, as the server wrote it)."""
        store = SQLiteStore(self.state_dir / "loopserve.db")
        try:
            return {s.prediction_id: s.label for s in store.samples(model) if s.source == source}
        finally:
            store.close()

    def stop(self) -> int | None:
        return self.member.stop()


def start(root: Path, built_state: Path, backbone: Path) -> ConsoleProcess:
    """Definitions, a copy of the built state and a tokens file under ``root``; the server."""
    models, state = root / "models", root / "state"
    write_tiny_definition(models, backbone, drift=DRIFT, extra_toml=ADAPTATION)
    shutil.copytree(built_state, state)
    write_definition(models, IMAGE_MODEL, IMAGE_SIZE, DRIFT)
    publish_version(state, IMAGE_MODEL, IMAGE_SIZE)
    tokens = Tokens.fresh()
    tokens_file = root / "tokens"
    tokens_file.write_text(tokens.file_text())
    args = [
        "--model", TINY_MODEL, "--model", IMAGE_MODEL, "--models-dir", str(models),
        "--state-dir", str(state), "--tokens-file", str(tokens_file), "--host", "127.0.0.1",
        "--grpc-port", "0", "--metrics-port", "0", "--console-port", "0", "--drain-seconds", "2",
    ]  # fmt: skip
    member = Member("console-server", args, dict(os.environ))
    try:
        member.wait_log("console at ", timeout=30)
        found = CONSOLE_LINE.search(member.text())
        assert found is not None, member.text()
        server = ConsoleProcess(member, found.group(1), state, tokens)
        wait_until(lambda: _serving(server.address), 30, "gRPC health SERVING")
        wait_until(lambda: _answers(f"{server.url}/login"), 30, "the console to answer")
    except BaseException:
        member.stop()
        raise
    return server


def _serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
