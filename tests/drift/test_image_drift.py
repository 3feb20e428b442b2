"""Drift, estimated accuracy and labeling candidates of an image model served for real: the tiny
ONNX colour classifier, its detectors on the version's first traffic, images sent as PNG."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np
import numpy.typing as npt
import pytest
import waiting
from conftest import RunningApp
from PIL import Image
from tasks.image.tiny_image_model import COLOURS, publish_version, write_definition
from test_monitor import DRIFT as TEXT_DRIFT
from test_monitor import rewrite_csv

from service.api._proto.inference import grpc_predict_v2_pb2 as pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.api.adaptation_client import AdaptationClient
from service.cli import main
from service.config import ServerSettings, load_model_definition
from service.domain.loop import content_key
from service.drift import DetectorState, DriftMonitor, DriftStatus
from service.errors import ConfigError
from service.metrics import Metrics

MODEL = "colours"
SIZE = 32
BASES = {"red": (200, 60, 60), "green": (60, 200, 60), "blue": (60, 60, 200)}
# test_monitor's detectors, all on the version's first 60 requests: small windows at levels
# that a few dozen shifted images are enough to cross.
DRIFT = TEXT_DRIFT.replace('embedding_reference = "training"\n', "")


def start(tmp_path: Path, drift: str = DRIFT) -> RunningApp:
    models_dir, state_dir = tmp_path / "models", tmp_path / "state"
    write_definition(models_dir, MODEL, SIZE, drift)
    publish_version(state_dir, MODEL, SIZE)
    settings = ServerSettings(
        models=(MODEL,), models_dir=models_dir, state_dir=state_dir, host="127.0.0.1",
        grpc_port=0, metrics_port=0, drain_seconds=2.0,
    )  # fmt: skip
    return RunningApp(settings, Metrics())


@pytest.fixture
def image_server(tmp_path: Path) -> Iterator[RunningApp]:
    app = start(tmp_path)
    yield app
    app.stop()


def png(pixels: npt.NDArray[np.float64]) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, "PNG")
    return out.getvalue()


def photos(count: int, seed: int, tint: float = 0.0, side: int = 40) -> list[bytes]:
    """Noisy images of the three colours in equal shares; ``tint`` blends them towards blue (a
    camera whose white balance went wrong)."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        base = np.array(BASES[COLOURS[int(rng.integers(3))]], dtype=np.float64)
        base += rng.uniform(-40, 40, size=3)
        pixels = base + rng.normal(0, 25, size=(side, side, 3))
        pixels = (1 - tint) * pixels + tint * np.array([20.0, 40.0, 230.0])
        images.append(png(np.clip(pixels, 0, 255)))
        assert len(images) == i + 1
    return images


def send(address: str, images: list[bytes], prefix: str, per_request: int = 1) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = GRPCInferenceServiceStub(channel)
        for start in range(0, len(images), per_request):
            request = pb.ModelInferRequest(model_name=MODEL, id=f"{prefix}{start}")
            batch = images[start : start + per_request]
            tensor = request.inputs.add(name="image", datatype="BYTES", shape=[len(batch)])
            tensor.contents.bytes_contents.extend(batch)
            stub.ModelInfer(request, timeout=20)


def wait_for(
    server: RunningApp, predicate: Callable[[DriftStatus], bool], timeout: float = 60
) -> DriftStatus:
    drift = server.app.drift
    assert drift is not None
    return waiting.wait_for(lambda: drift.status(MODEL), predicate, timeout, "drift status")


def ready(status: DriftStatus) -> bool:
    return len(status.detectors) == 3 and all(
        d.state is DetectorState.READY for d in status.detectors
    )


def seen(count: int) -> Callable[[DriftStatus], bool]:
    return lambda s: ready(s) and all(d.samples_seen >= count for d in s.detectors)


def test_a_colour_shift_raises_the_model_alarm_and_accuracy_is_estimated(
    image_server: RunningApp,
) -> None:
    send(image_server.address, photos(60, seed=1), "ref")
    status = wait_for(image_server, ready)
    assert {d.reference_source for d in status.detectors} == {"traffic"}
    send(image_server.address, photos(80, seed=2), "in", per_request=2)
    status = wait_for(image_server, seen(80))
    assert not status.alarm and not any(d.alarm for d in status.detectors)
    assert 0.5 < status.estimated_accuracy <= 1
    metrics = image_server.app.metrics.registry
    published = metrics.get_sample_value(
        "loopserve_estimated_accuracy", {"model": MODEL, "version": "1"}
    )
    assert published is not None and math.isclose(published, status.estimated_accuracy)
    send(image_server.address, photos(80, seed=3, tint=0.7), "blue", per_request=2)
    status = wait_for(image_server, lambda s: s.alarm)
    assert any(d.alarm and d.budgeted for d in status.detectors)
    assert metrics.get_sample_value("loopserve_drift_alarm", {"model": MODEL}) == 1


def test_candidates_are_the_served_images_and_go_out_as_files_and_a_csv(
    image_server: RunningApp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = photos(6, seed=4) + photos(6, seed=4)  # each image twice: kept and offered once
    send(image_server.address, images, "img", per_request=3)
    assert image_server.app.drift is not None
    pool = image_server.app.drift.pools[MODEL]
    waiting.wait_until(lambda: len(pool) >= 12, 10, lambda: f"{len(pool)} of 12 in the pool")
    with AdaptationClient(image_server.address) as client:
        candidates = client.labeling_candidates(MODEL, 20)
    assert sorted(c.content for c in candidates) == sorted(images[:6])
    assert all(c.text == "" and c.prediction_id.startswith("img") for c in candidates)
    out = tmp_path / "review" / "candidates.csv"
    out.parent.mkdir()
    addr = ["--addr", image_server.address, "--model", MODEL]
    assert main(["candidates", *addr, "--out", str(out), "--count", "4", "--json"]) == 0
    given = json.loads(capsys.readouterr().out)
    assert [Path(c["path"]).read_bytes() in images for c in given] == [True] * 4
    assert "content" not in given[0] and "text" not in given[0]
    assert main(["candidates", *addr, "--out", str(out), "--count", "4"]) == 0
    assert "wrote 4 candidates" in capsys.readouterr().out
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and all(r["label"] == "" and r["prediction_id"] for r in rows)
    for row in rows:
        file = out.parent / row["path"]
        assert file.suffix == ".png" and file.read_bytes() in images
        assert content_key(file.read_bytes()).removeprefix("sha256:").startswith(file.stem)
    for row in rows[:2]:
        row["label"] = row["predicted_label"]
    rewrite_csv(out, rows)
    assert main(["label", *addr, str(out), "--skip-unlabeled", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accepted"] == 2
    labeled = {r["prediction_id"] for r in rows[:2]}
    with AdaptationClient(image_server.address) as client:
        remaining = {c.prediction_id for c in client.labeling_candidates(MODEL, 20)}
    assert len(remaining) == 4 and not remaining & labeled


def test_the_pool_keeps_images_within_its_byte_budget(tmp_path: Path) -> None:
    budget = 1024 * 1024
    server = start(tmp_path, DRIFT + f"candidate_pool_bytes = {budget}\n")
    try:
        images = photos(160, seed=5, side=96)  # noise: about 25 KB each as PNG
        assert sum(map(len, images)) > 3 * budget
        assert server.app.drift is not None
        pool = server.app.drift.pools[MODEL]
        for part in range(4):
            send(server.address, images[part * 40 : (part + 1) * 40], f"p{part}-", per_request=4)
            assert pool.size_bytes <= budget
        monitor = server.app.drift
        waiting.wait_until(
            lambda: monitor._queues[MODEL].empty() and not monitor._queued_bytes[MODEL],
            10, "the monitor's queue to drain",
        )  # fmt: skip
        # What a job's review gets: the images, newest first (those of requests that came while
        # the monitor's queue held more than the budget were watched, not kept).
        kept = pool.recent(1000)
        order = [images.index(image) for image in kept]
        assert 0 < len(kept) < len(images) and order == sorted(order, reverse=True)
        assert sum(map(len, kept)) <= pool.size_bytes <= budget
        gauge = server.app.metrics.registry.get_sample_value(
            "loopserve_candidate_pool_bytes", {"model": MODEL}
        )
        assert gauge == pool.size_bytes
        # Only embeddings and encoded bytes stay: no decoded [3, S, S] arrays (nor views of them).
        for entry in list(pool._entries):
            assert entry.embedding.shape == (3,) and entry.embedding.base is None
    finally:
        server.stop()


def test_a_training_reference_for_an_image_model_is_refused_at_start(tmp_path: Path) -> None:
    write_definition(tmp_path, MODEL, SIZE, DRIFT + 'embedding_reference = "training"\n')
    definition = load_model_definition(tmp_path, MODEL)
    served = SimpleNamespace(definition=definition, serving_version=None)
    with pytest.raises(ConfigError) as error:
        DriftMonitor({MODEL: served}, tmp_path, Metrics(), reference_texts=lambda *_: [])
    assert str(error.value) == (
        "model 'colours' [drift] embedding_reference = \"training\": the training reference is "
        "built from training texts, which task 'image-classification' does not have; use "
        '"traffic" (the version\'s first requests)'
    )
