"""The closed loop of an image model through the whole server and a real job process: labeled
images posted with AddSamples train a candidate (the job reads them from its inputs dir), and a
purge then leaves no byte of them anywhere under the state dir (database, its log, job
directories, versions, drift)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RunningApp
from PIL import Image, PngImagePlugin
from tasks.image.training.images import folder, image
from waiting import wait_for

from service.api.adaptation_client import AdaptationClient
from service.config import ServerSettings, load_model_definition
from service.domain.loop import JobState, NewSample
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.training import build_first_version

pytestmark = pytest.mark.slow

MODEL = "shapes"
LABELS = ["blue", "red"]
MARKER = b"qz7loopimagemarker"  # in a PNG text chunk of every posted image
MODEL_TOML = f"""[model]
task = "image-classification"
backbone = "resnet18@0.25:random"
labels = {LABELS!r}
seed_data = "seed"

[input]
size = 32
crop_fraction = 1.0

[train]
finetune_layers = 1
epochs = 2
head_epochs = 100
augment = ["crop"]
augment_views = 1

[adaptation]
min_new_samples = 100000
epochs = 2
job_threads = 1

[drift]
detectors = []
""".replace("'", '"')
# For tests of what follows the gate: its limits wide, since one anchor row can swing it on a
# seed set this small.
WIDE_GATE_TOML = MODEL_TOML + "\n[gate]\nnew_data_tolerance = 0.5\nmax_forgetting = 0.5\n"


def marked(label: str, n: int) -> bytes:
    """A generated image of ``label``, as a PNG whose text chunk holds the marker."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", MARKER.decode())
    out = io.BytesIO()
    Image.open(io.BytesIO(image(label, n))).convert("RGB").save(out, "PNG", pnginfo=info)
    return out.getvalue()


def built(root: Path, toml: str = MODEL_TOML) -> tuple[Path, Path]:
    """The models dir (the definition ``toml``, 8 seed images per label) and a state dir with
    version 1 built, under ``root``."""
    models, state = root / "models", root / "state"
    (models / MODEL).mkdir(parents=True)
    (models / MODEL / "model.toml").write_text(toml, encoding="utf-8")
    folder(models / MODEL / "seed", LABELS, 8)
    definition = load_model_definition(models, MODEL)
    build_first_version(definition, ModelRegistry(state, MODEL), lambda line: None)
    return models, state


def serving(models: Path, state: Path) -> RunningApp:
    """A server of the model on ephemeral ports, in this process."""
    settings = ServerSettings(
        models=(MODEL,), models_dir=models, state_dir=state, host="127.0.0.1",
        grpc_port=0, metrics_port=0, drain_seconds=2.0,
    )  # fmt: skip
    return RunningApp(settings, Metrics())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningApp]:
    running = serving(*built(tmp_path))
    yield running
    running.stop()


def test_a_job_trains_on_posted_images_and_a_purge_leaves_none_of_their_bytes(
    server: RunningApp, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    posted = [NewSample("", label, data=marked(label, n)) for label in LABELS for n in range(12)]
    with AdaptationClient(server.address) as client:
        assert client.add_samples(MODEL, posted).accepted == 24
        job = client.start_fine_tune(MODEL, "image loop test")
        job = wait_for(lambda: client.get_job(job.id), lambda j: j.state.finished, 600, "the job")
        # Trained and judged on them: the job read every image from its inputs dir.
        assert job.state in (JobState.PROMOTED, JobState.REJECTED), job.error
        assert job.data is not None and [s.samples for s in job.data.sources] == [24]
        assert not (state / "jobs" / job.id / "inputs").exists()
        # Only the database holds them now (the file, or its log before a checkpoint).
        assert _holding(state) and set(_holding(state)) <= {"loopserve.db", "loopserve.db-wal"}

        outcome = client.purge_samples(MODEL, "anonymous")
        assert outcome.removed == 24 and outcome.versions == [job.candidate_version]
    assert _holding(state) == []


def _holding(state: Path) -> list[str]:
    return sorted(
        str(path.relative_to(state))
        for path in state.rglob("*")
        if path.is_file() and MARKER in path.read_bytes()
    )
