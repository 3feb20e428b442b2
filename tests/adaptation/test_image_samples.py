"""Labeled images through the real server: AddSamples carries each image as Sample.content, the
task decodes it with the safe decoder before anything is stored, the store keeps the bytes once
under their content key, a label posted for a served image scores its prediction, and a purge
leaves no byte of the purged images in the state dir."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import RunningApp
from PIL import Image, PngImagePlugin
from tasks.image.hostile_images import BLUE, GREEN, RED, png_bomb, solid
from tasks.image.tiny_image_model import publish_version, write_definition

from service.api._proto.inference import grpc_predict_v2_pb2 as infer_pb
from service.api._proto.inference.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from service.api._proto.loopserve.v1 import adaptation_pb2 as pb
from service.api._proto.loopserve.v1.adaptation_pb2_grpc import AdaptationStub
from service.config import ServerSettings
from service.domain.loop import NewSample, content_key, derived_sample_id
from service.metrics import Metrics
from service.store import SQLiteStore
from service.tasks.image import ImageInputs

MODEL = "colours"
SIZE = 16
MARKER = b"qz7imagemarker"  # in a PNG text chunk of every image the purged source posts
MAX_IMAGE_BYTES = 20_000
MAX_PIXELS = 1_000_000


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def app(tmp_path: Path, state_dir: Path) -> Iterator[RunningApp]:
    models_dir = tmp_path / "models"
    write_definition(models_dir, MODEL, SIZE)
    toml = models_dir / MODEL / "model.toml"
    text = toml.read_text(encoding="utf-8")
    limits = f"max_image_bytes = {MAX_IMAGE_BYTES}\nmax_pixels = {MAX_PIXELS}\n"
    text = text.replace("[input]\n", f"[input]\n{limits}")
    toml.write_text(text + "\n[adaptation]\nmin_new_samples = 100000\n", encoding="utf-8")
    publish_version(state_dir, MODEL, SIZE)
    metrics = Metrics()
    settings = ServerSettings(
        models=(MODEL,), models_dir=models_dir, state_dir=state_dir, host="127.0.0.1",
        grpc_port=0, metrics_port=0, drain_seconds=2.0,
    )  # fmt: skip
    running = RunningApp(settings, metrics)
    yield running
    running.stop()


@pytest.fixture
def stub(app: RunningApp) -> Iterator[AdaptationStub]:
    with grpc.insecure_channel(app.address) as channel:
        yield AdaptationStub(channel)


def marked(color: tuple[int, int, int], note: str = "") -> bytes:
    """A PNG whose text chunk holds the marker (and ``note``, to make it unique)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", (MARKER + note.encode()).decode())
    out = io.BytesIO()
    Image.new("RGB", (24, 24), color).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def add(stub: AdaptationStub, *samples: pb.Sample) -> pb.AddSamplesResponse:
    request = pb.AddSamplesRequest(model=MODEL, samples=list(samples))
    response: pb.AddSamplesResponse = stub.AddSamples(request, timeout=20)
    return response


def refused(stub: AdaptationStub, *samples: pb.Sample) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        add(stub, *samples)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    return caught.value.details() or ""


def stored(state_dir: Path) -> SQLiteStore:
    return SQLiteStore(state_dir / "loopserve.db")


def test_images_are_stored_once_under_their_key_and_posting_again_is_a_duplicate(
    stub: AdaptationStub, state_dir: Path
) -> None:
    red, blue = solid("JPEG", color=RED), solid("WEBP", color=BLUE)
    first = add(stub, pb.Sample(content=red, label="red"), pb.Sample(content=blue, label="blue"))
    again = add(stub, pb.Sample(content=red, label="red"), pb.Sample(content=red, label="red"))

    assert (first.accepted, first.duplicates) == (2, 0)
    assert (again.accepted, again.duplicates) == (0, 2)
    assert list(first.ids) == [
        derived_sample_id(content_key(red), "red"),
        derived_sample_id(content_key(blue), "blue"),
    ]
    store = stored(state_dir)
    try:
        assert [(s.text, s.label) for s in store.samples(MODEL)] == [
            (content_key(red), "red"),
            (content_key(blue), "blue"),
        ]
        assert store.blobs(MODEL, [content_key(red), content_key(blue)]) == {
            content_key(red): red,
            content_key(blue): blue,
        }
    finally:
        store.close()


def test_the_same_image_under_a_caller_id_with_another_label_is_refused(
    stub: AdaptationStub,
) -> None:
    green = solid("PNG", color=GREEN)
    add(stub, pb.Sample(content=green, label="green", id="photo-1"))
    details = refused(stub, pb.Sample(content=green, label="blue", id="photo-1"))
    assert details == (
        f"sample id 'photo-1' of model '{MODEL}' is already stored with a different content or "
        "label; nothing from this batch was stored"
    )


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        (
            pb.Sample(content=solid("PNG")[:40], label="red"),
            "sample[1]: PNG image is truncated",
        ),
        (
            pb.Sample(content=b"GIF89a not allowed", label="red"),
            "sample[1]: GIF files are not accepted; send JPEG, PNG or WebP",
        ),
        (pb.Sample(content=png_bomb(2000), label="red"), "sample[1]: image is 2000x2000 = "),
        (
            pb.Sample(content=solid("PNG") + bytes(MAX_IMAGE_BYTES), label="red"),
            f"sample[1]: image is {len(solid('PNG')) + MAX_IMAGE_BYTES} bytes, over the limit "
            f"of {MAX_IMAGE_BYTES}",
        ),
        (
            pb.Sample(label="red"),
            "sample[1] has no content; send JPEG, PNG or WebP as Sample.content",
        ),
        (
            pb.Sample(text="a red square", content=solid("PNG"), label="red"),
            "sample[1] has a text; an image model takes the image file as Sample.content, "
            "with an empty text",
        ),
        (
            pb.Sample(content=solid("PNG"), label="purple"),
            "sample[1] label 'purple' is not one of the model's labels",
        ),
    ],
    ids=["truncated", "not-an-image", "pixel-bomb", "too-large", "no-content", "text", "label"],
)
def test_a_bad_image_refuses_the_call_naming_the_sample(
    stub: AdaptationStub, state_dir: Path, sample: pb.Sample, message: str
) -> None:
    details = refused(stub, pb.Sample(content=solid("PNG", color=RED), label="red"), sample)
    assert details.startswith(message), details
    store = stored(state_dir)
    try:
        assert store.count(MODEL) == 0  # nothing of the call was stored
    finally:
        store.close()


def test_posted_images_are_decoded_off_the_event_loop(
    app: RunningApp, stub: AdaptationStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    validate = ImageInputs.validate_sample

    def recording(self: ImageInputs, index: int, sample: NewSample) -> None:
        threads.append(threading.current_thread())
        validate(self, index, sample)

    monkeypatch.setattr(ImageInputs, "validate_sample", recording)
    add(stub, pb.Sample(content=solid("PNG", color=RED), label="red"))
    assert len(threads) == 1 and threads[0] is not app._thread  # not the event loop's thread


def test_a_label_for_a_served_image_scores_its_prediction(
    app: RunningApp, stub: AdaptationStub
) -> None:
    images = [solid("PNG", color=RED), solid("PNG", color=GREEN)]
    request = infer_pb.ModelInferRequest(model_name=MODEL, id="req-7")
    tensor = request.inputs.add(name="image", datatype="BYTES", shape=[len(images)])
    tensor.contents.bytes_contents.extend(images)
    with grpc.insecure_channel(app.address) as channel:
        GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=20)

    add(
        stub,
        pb.Sample(content=images[0], label="red", prediction_id="req-7/0"),  # right
        pb.Sample(content=images[1], label="blue", prediction_id="req-7/1"),  # predicted green
    )
    value = app.app.metrics.registry.get_sample_value
    labels = {"model": MODEL, "version": "1"}
    assert value("loopserve_online_labeled_predictions_total", labels) == 2
    assert value("loopserve_online_correct_predictions_total", labels) == 1
    assert value("loopserve_online_accuracy", labels) == 0.5


def test_a_purge_leaves_no_byte_of_the_purged_images_in_the_state_dir(
    stub: AdaptationStub, state_dir: Path
) -> None:
    posted = [marked(color, str(i)) for i, color in enumerate([RED, GREEN, BLUE, RED])]
    add(stub, *(pb.Sample(content=data, label=label) for data, label in zip(
        posted, ["red", "green", "blue", "red"], strict=True
    )))  # fmt: skip
    assert _holding(state_dir), "the marker is in the database before the purge"

    purged = stub.PurgeSamples(pb.PurgeSamplesRequest(model=MODEL, source="anonymous"), timeout=20)
    assert purged.removed == 4
    assert _holding(state_dir) == []
    store = stored(state_dir)
    try:
        assert store.blobs(MODEL, [content_key(data) for data in posted]) == {}
    finally:
        store.close()


def _holding(state_dir: Path) -> list[str]:
    return [
        str(path.relative_to(state_dir))
        for path in state_dir.rglob("*")
        if path.is_file() and MARKER in path.read_bytes()
    ]
