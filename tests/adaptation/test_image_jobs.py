"""A fine-tune job of an image model gets its inputs as files: the real AdaptationService and
JobRunner (spec writing, the inputs dir, the data record, publishing) with only the job process
faked, as in test_purge.

The spec names every image by content key; ``<job dir>/inputs/<hex>`` holds its bytes while the
job runs (posted samples from the store, seed images from the model's folder, served traffic);
the directory goes when the job ends, and a purge then leaves no byte of the images behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin
from test_job_races import LABELS, MODEL
from test_purge import FakeProcess, Loop, running_loop

from service import tasks
from service.domain.finetune import FineTuneSpec
from service.domain.loop import JobState, NewSample, content_key
from service.domain.versions import VersionMeta
from service.store import SQLiteStore
from service.tasks.image import ImageInputs, ImageOptions

IMAGE_TASK = "image-classification"
MARKER = b"qz7jobimagemarker"  # in a text chunk of every image the labeler posts
COLOURS = {"a": (220, 20, 20), "b": (20, 20, 220)}


def png(label: str, note: str, marker: bytes = MARKER) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", (marker + note.encode()).decode())
    out = io.BytesIO()
    Image.new("RGB", (20, 20), COLOURS[label]).save(out, "PNG", pnginfo=info)
    return out.getvalue()


@pytest.fixture(params=["sqlite", "postgres"])
def loop(request: pytest.FixtureRequest, tmp_path: Path, process: FakeProcess) -> Iterator[Loop]:
    """The loop of test_purge over either store, on an image model with a seed folder."""
    with running_loop(request, tmp_path / "state", process) as running:
        seed = tmp_path / "model" / "seed"
        for label in LABELS:
            (seed / label).mkdir(parents=True)
            for i in range(2):
                (seed / label / f"{i}.png").write_bytes(png(label, f"seed {i}", b"seed"))
        served = running.served
        served.definition.task = IMAGE_TASK
        served.definition.seed_path = seed
        served.task = tasks.get(IMAGE_TASK)
        served.inputs = ImageInputs(ImageOptions(size=16))
        yield running


@pytest.fixture
def process(monkeypatch: pytest.MonkeyPatch) -> FakeProcess:
    from service.adaptation.jobs import JobRunner

    fake = FakeProcess()
    monkeypatch.setattr(JobRunner, "_run_process", fake)
    return fake


def post(loop: Loop, source: str, count: int, marker: bytes = MARKER) -> list[bytes]:
    images = [png(LABELS[i % 2], f"{source} {i}", marker) for i in range(count)]
    samples = [NewSample("", LABELS[i % 2], data=data) for i, data in enumerate(images)]
    asyncio.run(loop.service.add_samples(MODEL, samples, caller=source))
    return images


def named_keys(spec: FineTuneSpec) -> set[str]:
    pairs = [*spec.train, *spec.validation, *spec.holdout, *spec.anchor]
    return {text for text, _ in pairs} | {t for t, _, _ in spec.round_samples} | {*spec.traffic}


def holding(state_dir: Path, marker: bytes = MARKER) -> list[str]:
    return [
        str(path.relative_to(state_dir))
        for path in state_dir.rglob("*")
        if path.is_file() and marker in path.read_bytes()
    ]


def test_a_job_reads_every_image_it_names_from_its_inputs_dir_until_it_ends(
    loop: Loop, process: FakeProcess
) -> None:
    posted = post(loop, "labeler", 12)
    served_image = png("a", "served", b"traffic")
    runner = loop.service._runners[MODEL]
    runner._recent_inputs = lambda model, count: [served_image, b"", "", served_image]
    job = loop.start()
    assert process.running.wait(10)
    (spec,) = process.specs

    assert (spec.task, Path(spec.inputs_dir)) == (
        IMAGE_TASK,
        loop.state_dir / "jobs" / job.id / "inputs",
    )
    keys = named_keys(spec)
    assert {content_key(data) for data in posted} <= keys  # every new sample, by key
    seed = {content_key(p.read_bytes()) for p in loop.served.definition.seed_path.rglob("*.png")}
    assert seed & {text for text, _ in spec.anchor + spec.train}  # replayed or anchored
    assert spec.traffic == [content_key(served_image)] * 2
    files = {path.name: path.read_bytes() for path in Path(spec.inputs_dir).iterdir()}
    assert {f"sha256:{name}" for name in files} == keys
    assert all(hashlib.sha256(data).hexdigest() == name for name, data in files.items())

    process.gate.set()
    assert loop.wait_finished(job).state is JobState.PROMOTED
    assert not Path(spec.inputs_dir).exists()
    assert loop.purge("labeler").removed == 12
    assert holding(loop.state_dir) == []


def test_an_image_candidate_records_its_base_versions_task_and_inputs(
    loop: Loop, process: FakeProcess
) -> None:
    """Without them the candidate's meta.json reads as a text version's, and the swap fails to
    load it: an image model's inputs are decoded as its serving version's meta.json says."""
    registry = loop.served.registry
    inputs = {"size": 16, "max_images_per_request": 4}
    base_meta = VersionMeta(labels=tuple(LABELS), max_seq_length=0, task=IMAGE_TASK, inputs=inputs)
    with registry.stage(parent=1) as staged:
        base = registry.publish(staged, base_meta)
    loop.served.activate(base.version, expected=1)
    post(loop, "labeler", 12)
    job = loop.start()
    process.gate.set()
    done = loop.wait_finished(job)

    assert done.state is JobState.PROMOTED and done.candidate_version == base.version + 1
    candidate = registry.get(done.candidate_version)
    assert (candidate.meta.task, candidate.meta.inputs) == (IMAGE_TASK, inputs)
    written = json.loads((candidate.path / "meta.json").read_text(encoding="utf-8"))
    assert (written["task"], written["inputs"]) == (IMAGE_TASK, inputs)


def test_a_text_job_has_no_inputs_dir(tmp_path: Path, process: FakeProcess) -> None:
    state = tmp_path / "state"
    text_loop = Loop(state, SQLiteStore(state / "loopserve.db"))
    try:
        text_loop.post("team", 10)
        job = text_loop.start()
        assert process.running.wait(10)
        (spec,) = process.specs
        assert (spec.task, spec.inputs_dir) == ("text-classification", "")
        assert not (state / "jobs" / job.id / "inputs").exists()
        process.gate.set()
        assert text_loop.wait_finished(job).state is JobState.PROMOTED
    finally:
        text_loop.service.stop(5)
        text_loop.store.close()


def test_images_purged_while_the_job_reads_them_fail_it_before_the_process_starts(
    loop: Loop, process: FakeProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    post(loop, "team", 6, b"team")
    post(loop, "labeler", 6)
    read_blobs = loop.store.blobs

    def purge_first(model: str, keys: list[str]) -> dict[str, bytes]:
        loop.purge("labeler")  # lands between the job's read of the samples and of their bytes
        return read_blobs(model, keys)

    monkeypatch.setattr(loop.store, "blobs", purge_first)
    job = loop.start()
    done = loop.wait_finished(job)

    assert done.state is JobState.FAILED and not process.specs
    assert "6 samples of source 'labeler'" in done.error and "were purged" in done.error
    assert not (loop.state_dir / "jobs" / job.id / "inputs").exists()
    assert holding(loop.state_dir) == []


def test_start_up_removes_the_inputs_a_stopped_server_left(loop: Loop) -> None:
    jobs_dir = loop.state_dir / "jobs"
    left = jobs_dir / "job-gone" / "inputs"
    left.mkdir(parents=True)
    (left / ("0" * 64)).write_bytes(MARKER)

    loop.service.recover()
    assert not left.exists() and holding(loop.state_dir) == []
